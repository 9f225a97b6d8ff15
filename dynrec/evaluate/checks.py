"""Signs that something went wrong upstream, read from the stages' manifests: the "check
this" list that ``dynrec evaluate`` prints under its table and writes to ``metrics.json``.

Each check names what to look at and what to try. Thresholds are :data:`LIMITS`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dynrec.pipeline.workdir import WorkDir

#: empty-mask frames (fraction of frames), foreground share of the pixels, camera
#: reprojection error (px, median) of a bundle-adjusted solution, training PSNR (dB),
#: the same inside the foreground masks (dB, mean over frames: the demo's well-fitted figure has
#: 25.8, the ghostly walkers of real clip 4ty7 at 150 frames 23.6; set from these two only),
#: growth of the keypoint error during training (ratio final / initial).
LIMITS = {"empty_frames": 0.1, "foreground": 0.005, "ba_reproj_px": 2.0, "train_psnr": 25.0, "train_psnr_fg": 24.0,
          "kp_growth": 1.5}


def _masks(info: dict[str, Any], frames: int) -> list[str]:
    out = []
    empty = info.get("empty_frames")
    if isinstance(empty, int) and frames and empty / frames > LIMITS["empty_frames"]:
        out.append(f"masks: {empty} of {frames} frames have an empty mask; look at the masks "
                   "(WORK/masks) and name the subject with `dynrec preprocess -o WORK --prompt x,y`")
    share = info.get("foreground_fraction")
    if isinstance(share, float) and share < LIMITS["foreground"]:
        out.append(f"masks: the foreground covers {100 * share:.2f}% of the pixels: the subject may be missed; "
                   "name it with `--prompt x,y`")
    if info.get("subject") == "fixation":
        out.append("masks: nothing moved on its own, so the subject is what the camera keeps centred; "
                   "check that it is the one you want (`--prompt x,y` otherwise)")
    return out


def _cameras(info: dict[str, Any], frames: int) -> list[str]:
    out = []
    err = (info.get("reproj_error_px") or {}).get("median") if isinstance(info.get("reproj_error_px"), dict) else None
    if info.get("method") == "ba" and isinstance(err, float) and err > LIMITS["ba_reproj_px"]:
        out.append(f"cameras: SfM failed and the bundle-adjustment fallback left a median reprojection error of "
                   f"{err:.2f} px; the cameras (and everything after them) may be wrong")
    if info.get("depth_init") in ("plane", "none") and info.get("method") in ("ba", "colmap+ba"):
        start = "two views" if info.get("init") == "two-view" else "a plane"
        out.append(f"cameras: no depth maps, the bundle adjustment started from {start}; depth is interpolated "
                   "from sparse points (look at WORK/align)")
    return out


def _recon(info: dict[str, Any], frames: int) -> list[str]:
    out = []
    psnr = info.get("train_psnr")
    if isinstance(psnr, float) and psnr < LIMITS["train_psnr"]:
        out.append(f"recon: the training views are fitted to {psnr:.1f} dB only; look at the side-by-side video "
                   "(masks, depth and cameras are the usual suspects)")
    fg = info.get("train_psnr_fg")
    if isinstance(fg, float) and fg < LIMITS["train_psnr_fg"] and not (isinstance(psnr, float) and psnr < fg):
        out.append(f"recon: the subject (inside the masks) is fitted to {fg:.1f} dB only"
                   + (f", against {psnr:.1f} dB for the whole image" if isinstance(psnr, float) else "")
                   + ": it may render as a ghost; look at the side-by-side video (masks, tracks and depth of the "
                   "subject are the usual suspects)")
    kp = info.get("kp_input_error_px") or {}
    init, final = kp.get("init"), kp.get("final")
    if isinstance(init, float) and isinstance(final, float) and init > 0 and final > LIMITS["kp_growth"] * init:
        out.append(f"recon: the keypoint error grew during training ({init:.2f} -> {final:.2f} px): the motion "
                   "drifted away from the subject")
    return out


CHECKS: dict[str, Callable[[dict[str, Any], int], list[str]]] = {
    "masks": _masks, "cameras": _cameras, "recon": _recon,
}


def checks(work: WorkDir, frames: int) -> list[str]:
    """Everything worth a look in the committed manifests of ``work`` (``frames`` = T)."""
    out: list[str] = []
    for stage, check in CHECKS.items():
        manifest = work.manifest(stage)
        if manifest is not None:
            out.extend(check(manifest.get("info") or {}, frames))
    return out
