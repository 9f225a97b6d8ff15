"""Peak memory of one stage: resident set size (Linux ``VmHWM``, reset per stage) and CUDA.

``reset()`` before the stage and ``peak()`` after it. On Linux, writing ``5`` to
``/proc/self/clear_refs`` resets the process's RSS high-water mark, so each stage's manifest
gets its own peak; elsewhere the figure is the process's peak so far (``ru_maxrss``), which
is an upper bound. CUDA figures come from the caching allocator and are present only when
CUDA was initialised.
"""

from __future__ import annotations

import resource
import sys
from pathlib import Path

_CLEAR_REFS = Path("/proc/self/clear_refs")
_STATUS = Path("/proc/self/status")


def reset() -> bool:
    """Reset the peak counters; True when the RSS peak could be reset (Linux)."""
    _reset_cuda()
    try:
        _CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


def _reset_cuda() -> None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.reset_peak_memory_stats()


def peak_rss_mb() -> float:
    """Peak resident set size in MiB since the last :func:`reset` (or process start)."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    scale = 1.0 if sys.platform == "darwin" else 1024.0  # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale / 1024.0


def peak() -> dict[str, float]:
    """``{"peak_rss_mb": ..., "cuda_peak_mb": ...}`` (the CUDA entry only when CUDA was used)."""
    out = {"peak_rss_mb": round(peak_rss_mb(), 1)}
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda_peak_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out
