"""Evaluation protocols: the metric set, masks, resolution, frames and alignment of the paper that
defined each benchmark, so ``dynrec evaluate --protocol NAME`` reports numbers comparable with
its tables (``dynrec bench-table`` puts them beside the published ones).

A protocol only chooses and checks; every metric is computed by :mod:`dynrec.evaluate.compute`.
Where the work dir differs from what the protocol assumes (another dataset, another
resolution), the report lists the deviation instead of silently comparing unlike numbers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from dynrec.errors import DynrecError


@dataclass(frozen=True)
class Protocol:
    """One benchmark protocol. ``datasets`` are the ``scene.json`` datasets it is defined on
    (empty: any); ``resolution`` the imported resolution it expects (None: any)."""

    name: str
    metrics: tuple[str, ...]
    defined_by: str
    masks: str
    resolution_note: str
    frames: str
    alignment: str
    reference: str
    datasets: tuple[str, ...] = ()
    resolution: str | None = None

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["metrics"] = list(self.metrics)
        out["datasets"] = list(self.datasets)
        return out


PROTOCOLS: dict[str, Protocol] = {
    p.name: p
    for p in [
        Protocol(
            "dycheck", ("mpsnr", "mssim", "mlpips", "pck_t_kp"),
            "DyCheck (Gao et al. 2022), github.com/KAIR-BAIR/dycheck: core/metrics/image.py (masked PSNR/SSIM/LPIPS), "
            "core/tasks/kp_transfer.py (PCK-T)",
            "the dataset's co-visibility masks (covisible/<f>x/val), pixels seen by >= 5 training frames",
            "2x (DyCheck's default factor, 360x480 for the iPhone scenes)",
            "held-out (val) frames at the training times; keypoint transfer over all ordered pairs of the frames with a "
            "keypoint file (DyCheck's task samples 10 strided frames, NUM_KEYPOINT_FRAMES, and loads their files)",
            "none: the dataset's cameras",
            "the iPhone results of DyCheck and Shape of Motion (mPSNR, mSSIM, mLPIPS, PCK-T); HiMoR Table 1 reports "
            "PCK-T and LPIPS but masks only the background",
            ("dycheck",), "2x"),
        Protocol(
            "som", ("mpsnr", "mssim", "mlpips", "epe_3d_kp", "pck_3d_5cm", "pck_3d_10cm", "apck_kp"),
            "Shape of Motion (Wang et al. 2024), github.com/vye16/shape-of-motion: scripts/evaluate_iphone.py",
            "co-visibility masks of the val frames (evaluate_iphone.py reads its own 1x masks)",
            "1x (rgb/1x, depth/1x; APCK thresholds 4-64 px of 1x)",
            "val frames; 3D pairs of annotated frames including s = k, 2D pairs s != k",
            "Sim(3) (Umeyama, with scale) of the model's camera centres onto the ground truth's before 3D errors",
            "Shape of Motion's iPhone table (3D EPE, 5 / 10 cm, AJ, APCK, occlusion accuracy, mPSNR, mSSIM, mLPIPS); "
            "AJ and occlusion accuracy are not computed here (they need a visibility prediction)",
            ("dycheck",), "1x"),
        Protocol(
            "pose", ("ate", "rpe_trans", "rpe_rot"),
            "evo's APE / RPE as used by MonST3R (Zhang et al. 2024) and SirenPose (Table II) on Sintel, Bonn, TUM, DAVIS",
            "none", "any (poses only)",
            "every kept frame, RPE over consecutive frames (delta 1); MonST3R's subsets (datasets_preprocess/"
            "prepare_bonn.py, prepare_tum.py, dust3r/eval_metadata.py): Sintel's 14 dynamic sequences in full, Bonn "
            "balloon2 / crowd2 / crowd3 / person_tracking2 / synchronous frames 30:140, TUM frames 0:270:3 (90) — "
            "import them with `dynrec import ... --frames`",
            "Sim(3) Umeyama on camera centres (evo --align --correct_scale); SirenPose says 'Horn quaternion closure', "
            "the same least-squares similarity",
            "SirenPose Table II (MonST3R, DPVO, Robust-CVD, SirenPose on Sintel / Bonn / DAVIS)",
            ("sintel", "bonn", "tum", "davis", "synth")),
        Protocol(
            "nvidia", ("nv_psnr", "nv_ssim", "nv_lpips"),
            "Nvidia dynamic scenes (Yoon et al. 2020) as HiMoR uses them (following Marbles): train on camera 4 of "
            "the rig, test on cameras 3, 5 and 6",
            "none (full images)", "as imported",
            "held-out cameras at every training time (DynIBaR's eval_nvidia.py skips the first and last 3 times; "
            "HiMoR does not say which times it uses)",
            "none: the dataset's cameras",
            "HiMoR Table 2 / Table 4 (PSNR, SSIM, LPIPS per scene)",
            ("nvidia",)),
    ]
}


def get_protocol(name: str) -> Protocol:
    if name not in PROTOCOLS:
        raise DynrecError(f"unknown protocol {name!r}; known: {', '.join(PROTOCOLS)}")
    return PROTOCOLS[name]


def deviations(protocol: Protocol, scene_info: dict[str, Any],
               frame_size: tuple[int, int] | None = None) -> list[str]:
    """What differs between the work dir's ground truth and what ``protocol`` assumes."""
    out = []
    dataset = scene_info.get("dataset") or ("synth" if scene_info.get("preset") else None)
    if protocol.datasets and dataset not in protocol.datasets:
        out.append(f"protocol {protocol.name} is defined on {', '.join(protocol.datasets)}; this ground truth is "
                   f"{dataset or 'unknown'}: the numbers are not comparable with the published ones")
    res = scene_info.get("resolution")
    if frame_size is not None and scene_info.get("width") and frame_size != (scene_info["width"], scene_info["height"]):
        out.append(f"the frames were resized to {frame_size[0]}x{frame_size[1]} from the imported "
                   f"{scene_info['width']}x{scene_info['height']}; the protocol evaluates at the dataset's size")
    if protocol.resolution and res and res != protocol.resolution:
        out.append(f"protocol {protocol.name} evaluates at {protocol.resolution}; this scene was imported at {res} "
                   f"(`dynrec import ... --resolution {protocol.resolution}`)")
    return out
