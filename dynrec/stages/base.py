"""The stage contract: a stage is a Params dataclass plus a ``run`` that reads upstream
artifacts and writes its own into ``ctx.out``. Stages never import each other.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from dynrec.errors import DynrecError

#: ``progress(description, done, total)``: advance the stage's progress bar.
ProgressFn = Callable[[str, int, int], None]


def _no_progress(description: str, done: int, total: int) -> None:
    return None


@dataclass
class StageContext:
    """What a running stage may touch.

    ``out`` is the stage's private temporary folder (renamed into place on success);
    ``inputs`` maps each upstream stage name to its finished folder; ``checkpoints`` is a
    folder inside ``out`` kept across interrupted runs with the same key and removed on
    success; ``source`` is the input video or image folder; ``gt`` a ground-truth scene;
    ``weights_dir`` the folder learned backends look in first (``--weights-dir``); ``logs``
    the folder where third-party libraries' own log output goes (COLMAP), not the terminal.
    """

    work: Path
    out: Path
    inputs: dict[str, Path]
    device: str = "cpu"
    source: Path | None = None
    gt: Path | None = None
    weights_dir: Path | None = None
    logs: Path | None = None
    console: Console = field(default_factory=Console)
    progress: ProgressFn = _no_progress

    @property
    def checkpoints(self) -> Path:
        path = self.out / ".checkpoints"
        path.mkdir(parents=True, exist_ok=True)
        return path


@dataclass(frozen=True)
class StageSpec:
    """A registered stage.

    ``version`` is the artifact schema version (part of the key); ``upstream`` the stages
    whose artifacts it reads; ``run(ctx, params)`` returns extra manifest info (e.g. which
    method was used); ``external(params, source, gt)`` lists files or folders outside the
    work dir whose content is part of the key (the input video for ``frames``, the
    ground-truth files a ``gt`` backend copies); ``for_device(params, device)`` the params
    as they run on ``device`` (defaults that depend on it filled in), which the key hashes;
    ``weights(params)`` the network weights (:class:`dynrec.weights.Weight`) the stage will
    load with these params, fetched (or all named when missing offline) before any stage runs;
    ``check(params)`` raises :class:`DynrecError` naming a bad setting (a value out of range,
    an unknown choice) before anything is run or written; ``preflight(params, source, gt,
    console)`` checks inputs outside the work dir (the video) before any stage runs.
    """

    name: str
    version: int
    upstream: tuple[str, ...]
    params: type
    run: Callable[[StageContext, Any], dict[str, Any]]
    external: Callable[[Any, Path | None, Path | None], list[Path]] = lambda params, source, gt: []
    summary: str = ""
    for_device: Callable[[Any, str], Any] = lambda params, device: params
    weights: Callable[[Any], list[Any]] = lambda params: []
    check: Callable[[Any], None] = lambda params: None
    preflight: Callable[[Any, Path | None, Path | None, Console], None] = lambda params, source, gt, console: None


def pick_backend(stage: str, backends: dict[str, Callable[..., dict[str, Any]]], name: str) -> Callable[..., dict[str, Any]]:
    """The backend ``name`` of ``stage``; unknown or not-yet-available ones get one clear message."""
    if name not in backends:
        raise DynrecError(
            f"{stage}: backend '{name}' is not available in this version of dynrec "
            f"(available: {', '.join(backends)}); for a synth scene use --gt SCENE"
        )
    return backends[name]


def check_fields(stage: str, params: Any, minimum: dict[str, float] | None = None, positive: Iterable[str] = (),
                 choices: dict[str, Iterable[str]] | None = None) -> None:
    """Raise :class:`DynrecError` naming ``stage.field`` when a field is below its ``minimum``,
    not > 0 (``positive``) or not one of its ``choices`` (None values are left to the stage)."""
    for name, low in (minimum or {}).items():
        value = getattr(params, name)
        if value is not None and value < low:
            raise DynrecError(f"{stage}.{name} must be >= {low}, got {value}")
    for name in positive:
        value = getattr(params, name)
        if value is not None and not value > 0:
            raise DynrecError(f"{stage}.{name} must be > 0, got {value}")
    for name, allowed in (choices or {}).items():
        value, allowed = getattr(params, name), list(allowed)
        if value not in allowed:
            raise DynrecError(f"{stage}.{name} must be one of {', '.join(allowed)}, got '{value}'")
