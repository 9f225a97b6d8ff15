"""Where weights are looked for on disk (nothing here touches the network).

Folders, in order: ``--weights-dir``, ``$DYNREC_WEIGHTS``, then dynrec's own download folder
(:func:`default_dir`); torch-style checkpoints also in ``$TORCH_HOME/hub/checkpoints``; Hugging
Face models also in the hub cache. A Hugging Face model ``org/name`` is a folder holding a
``config.json`` at ``<dir>/org/name``, ``<dir>/org--name`` or ``<dir>/name``.

This is the one lookup: :func:`find_model` (a Hugging Face model folder), :func:`find_file` (a
checkpoint file) and :func:`cached_hub_repo` (a torch.hub clone) each return what they found
(or None) and every place they looked; :func:`dynrec.weights.locate`, the learned backends
(:mod:`dynrec.learned.weights`) and the metrics (:mod:`dynrec.metrics.weights`) only turn a miss
into their own error.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

TRUE = ("1", "true", "yes", "on")


def network_allowed() -> bool:
    """False when ``DYNREC_OFFLINE``, ``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE`` is set
    to 1/true/yes/on: then nothing is downloaded."""
    return not any(os.environ.get(v, "").strip().lower() in TRUE
                   for v in ("DYNREC_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def default_dir() -> Path:
    """Where ``dynrec`` downloads weights when neither ``--weights-dir`` nor
    ``$DYNREC_WEIGHTS`` is set: ``$XDG_CACHE_HOME/dynrec/weights`` (``~/.cache/dynrec/weights``)."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "dynrec" / "weights"


def target_dir(weights_dir: Path | str | None) -> Path:
    """The folder downloads go to: ``weights_dir``, else ``$DYNREC_WEIGHTS``, else :func:`default_dir`."""
    if weights_dir is not None:
        return Path(weights_dir).expanduser()
    env = os.environ.get("DYNREC_WEIGHTS")
    return Path(env).expanduser() if env else default_dir()


def torch_hub_checkpoints() -> Path:
    """``$TORCH_HOME/hub/checkpoints`` (``TORCH_HOME`` defaults to ``$XDG_CACHE_HOME/torch``
    or ``~/.cache/torch``), where torch.hub / torchvision cache downloaded weights."""
    torch_home = os.environ.get("TORCH_HOME")
    if not torch_home:
        cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        torch_home = str(Path(cache) / "torch")
    return Path(torch_home).expanduser() / "hub" / "checkpoints"


def search_dirs(weights_dir: Path | str | None, torch_hub: bool = False) -> list[Path]:
    """``weights_dir``, ``$DYNREC_WEIGHTS``, :func:`default_dir` (and with ``torch_hub``
    :func:`torch_hub_checkpoints`), duplicates removed."""
    dirs: list[Path] = []
    if weights_dir is not None:
        dirs.append(Path(weights_dir).expanduser())
    env = os.environ.get("DYNREC_WEIGHTS")
    if env:
        dirs.append(Path(env).expanduser())
    dirs.append(default_dir())
    if torch_hub:
        dirs.append(torch_hub_checkpoints())
    return list(dict.fromkeys(dirs))


def candidate_folders(model_id: str, weights_dir: Path | str | None) -> list[Path]:
    """The local folders tried for the Hugging Face model ``model_id``, in order."""
    out: list[Path] = []
    p = Path(model_id).expanduser()
    if p.is_absolute() or model_id.startswith("."):
        out.append(p)
    name = model_id.rsplit("/", 1)[-1]
    for d in search_dirs(weights_dir):
        for sub in dict.fromkeys([model_id, model_id.replace("/", "--"), name]):
            out.append(d / sub)
    return out


def hub_cache_snapshot(model_id: str) -> Path | None:
    """The Hugging Face cache's snapshot folder of ``model_id`` (nothing is downloaded), or None."""
    if "/" not in model_id or Path(model_id).expanduser().is_dir():
        return None
    try:
        from huggingface_hub import snapshot_download

        p = Path(snapshot_download(model_id, local_files_only=True))
    except Exception:  # noqa: BLE001 - any cache problem means "not cached"
        return None
    return p if (p / "config.json").is_file() else None


def find_model(model_id: str, weights_dir: Path | str | None) -> tuple[Path | None, list[str]]:
    """``(folder, searched)``: the first of :func:`candidate_folders` holding a ``config.json``,
    else the hub cache's snapshot (:func:`hub_cache_snapshot`), else None; ``searched`` names
    every place tried."""
    folders = candidate_folders(model_id, weights_dir)
    hit = next((f for f in folders if (f / "config.json").is_file()), None) or hub_cache_snapshot(model_id)
    return hit, [str(f) for f in folders] + ["Hugging Face cache"]


def find_file(filename: str, weights_dir: Path | str | None,
              extra: Sequence[Path | str] = ()) -> tuple[Path | None, list[str]]:
    """``(path, searched)``: the first existing ``<dir>/<filename>`` over
    ``search_dirs(weights_dir, torch_hub=True)``, then the full paths ``extra`` as given, else
    None; ``searched`` names every path tried."""
    places = [d / filename for d in search_dirs(weights_dir, torch_hub=True)] + [Path(p) for p in extra]
    hit = next((p for p in places if p.is_file()), None)
    return hit, [str(p) for p in places]


def hub_dir() -> Path:
    """``$TORCH_HOME/hub``, where torch.hub clones repositories (the parent of
    :func:`torch_hub_checkpoints`)."""
    return torch_hub_checkpoints().parent


def cached_hub_repo(repo: str) -> Path | None:
    """The folder torch.hub cloned ``owner/repo`` (a ``:ref`` suffix is ignored) into earlier,
    ``<hub_dir>/owner_repo_main`` or ``..._master`` holding a ``hubconf.py``, or None."""
    owner_repo = repo.split(":")[0].replace("/", "_")
    for branch in ("main", "master"):
        p = hub_dir() / f"{owner_repo}_{branch}"
        if (p / "hubconf.py").is_file():
            return p
    return None
