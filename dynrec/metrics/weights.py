"""Where metric weights are looked up, and the error when they are not there.

Nothing here downloads (``dynrec evaluate`` fetches missing weights first, see
:mod:`dynrec.weights`). A file is looked for, in order, in

1. the ``weights_dir`` passed by the caller (``--weights-dir``),
2. ``$DYNREC_WEIGHTS``,
3. dynrec's download folder (``~/.cache/dynrec/weights``, :func:`dynrec.weights.default_dir`),
4. ``$TORCH_HOME/hub/checkpoints`` (``~/.cache/torch`` when
   ``TORCH_HOME`` is unset), where ``torch.hub`` / torchvision put them,

and missing files raise :class:`WeightsMissing`, which names the file and every folder
searched.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from dynrec.metrics.base import MetricNotComputable
from dynrec.weights.locate import find_file, search_dirs, torch_hub_checkpoints

__all__ = ["WeightsMissing", "find_weights", "search_dirs", "torch_hub_checkpoints"]


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


def find_weights(
    filename: str,
    weights_dir: Path | str | None,
    metric: str,
    *,
    extra: Sequence[Path] = (),
    hint: str = "",
) -> Path:
    """Return the first existing ``<dir>/<filename>`` over the folders above, then ``extra``
    (full file paths tried as given; :func:`dynrec.weights.find_file`). Raises
    :class:`WeightsMissing` otherwise."""
    path, searched = find_file(filename, weights_dir, extra)
    if path is None:
        raise WeightsMissing(metric, filename, searched, hint)
    return path
