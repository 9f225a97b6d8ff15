"""Where metric weights are looked up, and the error when they are not there.

Nothing here downloads. A file is looked for, in order, in

1. the ``weights_dir`` passed by the caller (``--weights-dir``),
2. ``$DYNREC_WEIGHTS``,
3. for torch-style checkpoints, ``$TORCH_HOME/hub/checkpoints`` (``~/.cache/torch`` when
   ``TORCH_HOME`` is unset), where ``torch.hub`` / torchvision put them,

and missing files raise :class:`WeightsMissing`, which names the file and every folder
searched.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from dynrec.metrics.base import MetricNotComputable


class WeightsMissing(MetricNotComputable):
    """The weights a metric needs are not available offline.

    ``filename`` is the file (or model name) looked for, ``searched`` the folders tried.
    ``evaluate`` reports the metric as ``not computed: <message>``.
    """

    def __init__(self, metric: str, filename: str, searched: Sequence[Path | str], hint: str = ""):
        self.filename = filename
        self.searched = [str(p) for p in searched]
        where = ", ".join(self.searched) if self.searched else "(no folder configured)"
        reason = f"weights file '{filename}' not found (looked in: {where})"
        if hint:
            reason += f"; {hint}"
        super().__init__(metric, reason)


def torch_hub_checkpoints() -> Path:
    """``$TORCH_HOME/hub/checkpoints`` (``TORCH_HOME`` defaults to ``$XDG_CACHE_HOME/torch``
    or ``~/.cache/torch``), where torch.hub / torchvision cache downloaded weights."""
    torch_home = os.environ.get("TORCH_HOME")
    if not torch_home:
        cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        torch_home = str(Path(cache) / "torch")
    return Path(torch_home) / "hub" / "checkpoints"


def search_dirs(weights_dir: Path | str | None, torch_hub: bool = False) -> list[Path]:
    """The folders to search, in order (see the module docstring). Duplicates are removed."""
    dirs: list[Path] = []
    if weights_dir is not None:
        dirs.append(Path(weights_dir))
    env = os.environ.get("DYNREC_WEIGHTS")
    if env:
        dirs.append(Path(env))
    if torch_hub:
        dirs.append(torch_hub_checkpoints())
    unique: list[Path] = []
    for d in dirs:
        if d not in unique:
            unique.append(d)
    return unique


def find_weights(
    filename: str,
    weights_dir: Path | str | None,
    metric: str,
    *,
    torch_hub: bool = False,
    extra: Sequence[Path] = (),
    hint: str = "",
) -> Path:
    """Return the first existing ``<dir>/<filename>`` over :func:`search_dirs` then ``extra``
    (full file paths tried as given). Raises :class:`WeightsMissing` otherwise."""
    dirs = search_dirs(weights_dir, torch_hub)
    for d in dirs:
        p = d / filename
        if p.is_file():
            return p
    for p in extra:
        if Path(p).is_file():
            return Path(p)
    raise WeightsMissing(metric, filename, [*dirs, *[str(p) for p in extra]], hint)
