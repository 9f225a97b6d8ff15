"""Where learned-backend weights are looked up, and the error when they are not there.

A hub id ``org/name`` is resolved, without downloading anything, to the first folder that
holds a ``config.json`` among

1. ``<dir>/org/name``, ``<dir>/org--name``, ``<dir>/name`` for ``dir`` in ``--weights-dir``
   then ``$DYNREC_WEIGHTS`` and ``~/.cache/dynrec/weights`` (:func:`dynrec.weights.search_dirs`),
2. the Hugging Face hub cache (``snapshot_download(local_files_only=True)``).

A plain file (a torch checkpoint) is looked for as ``<dir>/<file>`` in the same folders and
then in ``$TORCH_HOME/hub/checkpoints``. The lookup itself is :mod:`dynrec.weights.locate`'s
(shared with ``dynrec weights`` and the metrics). Nothing here downloads: the pipeline fetches
what the learned stages need before they run (:mod:`dynrec.weights`). A miss raises
:class:`WeightsMissing`, which names the model, every place searched, and what to do
(``--weights-dir``, ``DYNREC_WEIGHTS`` or the ``--offline`` backends).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from dynrec.errors import DynrecError
from dynrec.weights.locate import find_file as lookup_file
from dynrec.weights.locate import find_model

__all__ = ["WeightsMissing", "find_file", "load_transformers_model", "resolve_model"]

OFFLINE_HINT = (
    "put the weights in --weights-dir DIR (or DYNREC_WEIGHTS) as DIR/<org>/<name>, "
    "fetch them with `dynrec weights fetch NAME` (network), or use --offline for the offline backends"
)


class WeightsMissing(DynrecError):
    """The weights of a learned backend are not available locally (and nothing is
    downloaded). ``model`` is the model id or file, ``searched`` the places tried."""

    def __init__(
        self, model: str, searched: Sequence[Path | str], hint: str = "", backend: str = ""
    ):
        self.model = model
        self.searched = [str(p) for p in searched]
        where = ", ".join(self.searched) if self.searched else "(no folder configured)"
        who = f"{backend}: " if backend else ""
        msg = f"{who}weights for '{model}' not found (looked in: {where}); {OFFLINE_HINT}"
        if hint:
            msg += f"; {hint}"
        super().__init__(msg)


def resolve_model(
    model_id: str, weights_dir: Path | str | None, backend: str = "", hint: str = ""
) -> Path:
    """The local folder (with ``config.json``) holding ``model_id``; see the module docstring.

    Raises:
        WeightsMissing: not in any weights folder nor in the hub cache.
    """
    folder, searched = find_model(model_id, weights_dir)
    if folder is None:
        raise WeightsMissing(model_id, searched, hint, backend)
    return folder


def find_file(
    filename: str | Path, weights_dir: Path | str | None, backend: str = "", hint: str = ""
) -> Path:
    """A checkpoint file: ``filename`` itself when it exists, else ``<dir>/<filename>`` over the
    weights folders and ``$TORCH_HOME/hub/checkpoints``. Raises :class:`WeightsMissing`."""
    p = Path(filename).expanduser()
    if p.is_file():
        return p
    hit, searched = lookup_file(p.name, weights_dir)
    if hit is None:
        raise WeightsMissing(str(filename), [str(p), *searched] if p.parent != Path() else searched, hint, backend)
    return hit


def hf_quiet():
    """A context manager that turns transformers' progress bars off while loading."""
    from contextlib import contextmanager

    @contextmanager
    def _quiet():
        from transformers.utils import logging as hf_logging

        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        try:
            yield
        finally:
            if bars:
                hf_logging.enable_progress_bar()

    return _quiet()


def load_pretrained(cls, folder: Path, model_id: str, backend: str, **kwargs):
    """``cls.from_pretrained(folder, local_files_only=True)``, with load failures turned into
    :class:`WeightsMissing` naming the folder."""
    try:
        with hf_quiet():
            return cls.from_pretrained(str(folder), local_files_only=True, **kwargs)
    except (OSError, ValueError) as e:
        raise WeightsMissing(model_id, [folder], f"could not load it ({e})", backend) from e


def torch_device(device) -> torch.device:  # noqa: F821 - string annotation only
    import torch

    return torch.device(device) if device is not None else torch.device("cpu")


def load_transformers_model(model_cls_name: str, model_id: str, weights_dir: Path | str | None, device,
                            backend: str, processor_has: str | None = None):
    """``(model, image_processor, device, folder)``: a transformers model class (by name) and
    its ``AutoImageProcessor`` from the local folder of ``model_id``, in eval mode on
    ``device``. ``processor_has`` names a method the processor must have (to reject a folder
    that holds another model's processor).

    Raises:
        WeightsMissing: not found locally, failed to load, or the wrong processor.
    """
    import transformers

    folder = resolve_model(model_id, weights_dir, backend)
    model = load_pretrained(getattr(transformers, model_cls_name), folder, model_id, backend)
    processor = load_pretrained(transformers.AutoImageProcessor, folder, model_id, backend)
    if not (hasattr(processor, processor_has) if processor_has else callable(processor)):
        raise WeightsMissing(model_id, [folder], f"its preprocessor_config.json is not {model_cls_name}'s", backend)
    dev = torch_device(device)
    model.eval().to(dev)
    return model, processor, dev, folder
