"""Network weights on demand: find them on disk, fetch the missing ones when the network is
allowed, and otherwise name every missing one at once.

:func:`locate` looks (never downloads); :func:`ensure` is what the pipeline and ``evaluate``
call before work starts; ``dynrec weights list`` / ``fetch`` are built on the same two.
Offline (``--offline``, ``DYNREC_OFFLINE=1``, ``HF_HUB_OFFLINE=1``) nothing touches the network.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from dynrec.errors import DynrecError
from dynrec.weights.catalog import (
    BY_NAME,
    CATALOG,
    COTRACKER,
    METRIC_WEIGHTS,
    Weight,
    for_hf_model,
    get,
)
from dynrec.weights.download import DownloadFailed, download_file, download_hf, download_torchhub
from dynrec.weights.locate import (
    cached_hub_repo,
    candidate_folders,
    default_dir,
    find_file,
    find_model,
    hub_cache_snapshot,
    hub_dir,
    network_allowed,
    search_dirs,
    target_dir,
    torch_hub_checkpoints,
)

__all__ = ["BY_NAME", "CATALOG", "COTRACKER", "METRIC_WEIGHTS", "DownloadFailed", "Found", "Weight", "WeightsNotFound",
           "cached_hub_repo", "candidate_folders", "default_dir", "ensure", "fetch", "find_file", "find_model",
           "for_hf_model", "get", "hub_cache_snapshot", "hub_dir", "locate", "network_allowed", "search_dirs",
           "target_dir", "torch_hub_checkpoints"]


@dataclass
class Found:
    """Where :func:`locate` found ``weight`` (``path`` None: missing) and every place it looked."""

    weight: Weight
    path: Path | None
    searched: list[str]


def lpips_package_heads() -> Path | None:
    """``weights/v0.1/alex.pth`` of an installed ``lpips`` package (found without importing
    it, since importing lpips imports torchvision), or None."""
    try:
        spec = importlib.util.find_spec("lpips")
    except (ImportError, ValueError):
        return None
    for loc in (spec.submodule_search_locations or []) if spec else []:
        p = Path(loc) / "weights" / "v0.1" / "alex.pth"
        if p.is_file():
            return p
    return None


def locate(weight: Weight, weights_dir: Path | str | None) -> Found:
    """Look for ``weight`` in every local place it may be (nothing is downloaded; the lookup is
    :mod:`dynrec.weights.locate`'s)."""
    if weight.kind == "hf":
        return Found(weight, *find_model(weight.repo, weights_dir))
    if weight.kind == "torchhub":
        return Found(weight, cached_hub_repo(weight.repo), [str(hub_dir())])
    pkg = lpips_package_heads() if weight.name == "lpips-heads" else None
    return Found(weight, *find_file(weight.filename, weights_dir, [pkg] if pkg else []))


class WeightsNotFound(DynrecError):
    """Weights are missing and may not (or could not) be downloaded; the message names every
    missing one and where it was looked for."""

    def __init__(self, missing: list[Found], why: str, failures: dict[str, str] | None = None):
        self.missing, self.failures = missing, dict(failures or {})
        lines = [f"{len(missing)} weight file(s) missing ({why}):"]
        for f in missing:
            lines.append(f"  {f.weight.name} [{f.weight.used_by}]: looked in {', '.join(f.searched)}")
            if failures and f.weight.name in failures:
                lines.append(f"    download failed: {failures[f.weight.name]}")
        names = " ".join(f.weight.name for f in missing)
        lines.append(f"fetch them with network access: `dynrec weights fetch {names}` (or put the files in "
                     "--weights-dir DIR / $DYNREC_WEIGHTS); `--offline` on preprocess uses the offline backends")
        super().__init__("\n".join(lines))


def fetch(weight: Weight, weights_dir: Path | str | None, console: Console | None = None) -> Path:
    """Download ``weight`` into :func:`target_dir` (a torch.hub repo into ``$TORCH_HOME/hub``).

    Raises:
        DownloadFailed: the network is off (see :func:`network_allowed`) or the download failed.
    """
    if not network_allowed():
        raise DownloadFailed(f"{weight.name}: the network is off (DYNREC_OFFLINE / HF_HUB_OFFLINE)")
    dest = target_dir(weights_dir)
    console = console or Console(stderr=True)
    console.print(f"  downloading {weight.name} ({weight.size}, {weight.licence}) for {weight.used_by}",
                  highlight=False)
    if weight.kind == "hf":
        return download_hf(weight.repo, dest / weight.repo, weight.patterns)
    if weight.kind == "torchhub":
        return download_torchhub(weight.repo)
    mirror = os.environ.get("DYNREC_WEIGHTS_MIRROR", "").rstrip("/")
    url = f"{mirror}/{weight.filename}" if mirror else weight.url
    return download_file(url, dest / weight.filename, weight.sha256, console, weight.name)


def ensure(weights: Iterable[Weight], weights_dir: Path | str | None, console: Console | None = None,
           offline: bool = False) -> dict[str, Path]:
    """Paths of ``weights``, downloading the missing ones unless ``offline`` or the network is off.

    Raises:
        WeightsNotFound: some are missing and could not be fetched; names every one of them.
    """
    found = [locate(w, weights_dir) for w in dict.fromkeys(weights)]
    missing = [f for f in found if f.path is None]
    if missing and (offline or not network_allowed()):
        raise WeightsNotFound(missing, "offline: nothing is downloaded")
    failures: dict[str, str] = {}
    paths = {f.weight.name: f.path for f in found if f.path is not None}
    for f in missing:
        try:
            paths[f.weight.name] = fetch(f.weight, weights_dir, console)
        except DownloadFailed as exc:
            failures[f.weight.name] = str(exc)
    if failures:
        raise WeightsNotFound([f for f in missing if f.weight.name in failures], "download failed", failures)
    return paths
