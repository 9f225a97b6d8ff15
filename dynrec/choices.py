"""Comma-separated lists of names on the command line (``--metrics``, ``--format``, ``--overlay``)."""

from __future__ import annotations

from collections.abc import Sequence

from dynrec.errors import DynrecError


def parse_choices(spec: str, choices: Sequence[str], option: str, what: str, allow_all: bool = True) -> list[str]:
    """``"b, A,b"`` -> ``["b", "a"]``: lower-cased names in the given order, duplicates dropped;
    ``"all"`` alone -> every choice when ``allow_all``.

    Raises:
        DynrecError: the list is empty or names something not in ``choices``; the message names
            ``option``, each bad item (a ``what``) and the allowed choices.
    """
    known = ", ".join(choices) + (" (or 'all')" if allow_all else "")
    names = list(dict.fromkeys(n.strip().lower() for n in spec.split(",") if n.strip()))
    if not names:
        raise DynrecError(f"{option} is empty; known {what}s: {known}")
    if allow_all and names == ["all"]:
        return list(choices)
    unknown = [n for n in names if n not in choices]
    if unknown:
        plural = "s" if len(unknown) > 1 else ""
        raise DynrecError(f"{option}: unknown {what}{plural} {', '.join(map(repr, unknown))}; known {what}s: {known}")
    return names
