"""Published numbers that ``dynrec bench-table`` puts beside dynrec's, each with its source.

Only numbers read in the papers' own tables (the texts in the project's shared papers folder:
HiMoR, Liang et al. CVPR 2025; SirenPose, Cai et al.) are here. A method / scene / metric
that those tables do not report is absent, and the table says why (:data:`GAPS`). Values are
copied as printed (HiMoR's LPIPS with its background-only co-visibility mask; SirenPose's
pose errors per dataset, not per scene).
"""

from __future__ import annotations

from dataclasses import dataclass

HIMOR = "HiMoR"
SOM = "Shape of Motion"
MOSCA = "MoSca"
MONST3R = "MonST3R"
SIRENPOSE = "SirenPose"
METHODS = (HIMOR, SOM, MOSCA, MONST3R, SIRENPOSE)

MEAN = "mean"


@dataclass(frozen=True)
class Published:
    """One printed number: ``method`` on ``scene`` (a scene, a dataset, or ``mean``), our
    metric name ``metric``, and where it is printed (``source``)."""

    protocol: str
    method: str
    scene: str
    metric: str
    value: float
    source: str


def _rows(protocol: str, source: str, method: str, metrics: tuple[str, ...],
          table: dict[str, tuple[float, ...]]) -> list[Published]:
    return [Published(protocol, method, scene, m, v, source)
            for scene, values in table.items() for m, v in zip(metrics, values, strict=True)]


# HiMoR Table 1 (iPhone, DyCheck): CLIP-I, CLIP-T, LPIPS, PCK-T per scene. LPIPS uses the
# co-visibility mask on the background only (HiMoR Sec. 4, "Evaluation metrics").
_T1 = ("clip_i_heldout", "clip_t_heldout", "mlpips", "pck_t_kp")
_HIMOR_T1 = {
    "apple": (0.8798, 0.9747, 0.5926, 0.8540), "block": (0.8707, 0.9750, 0.5059, 0.8421),
    "paper-windmill": (0.9275, 0.9853, 0.3216, 0.9883), "spin": (0.8853, 0.9658, 0.3696, 0.9158),
    "teddy": (0.8902, 0.9744, 0.5296, 0.8807), MEAN: (0.8907, 0.9750, 0.4639, 0.8962),
}
_SOM_T1 = {
    "apple": (0.8100, 0.9721, 0.6335, 0.7852), "block": (0.8658, 0.9745, 0.5083, 0.7671),
    "paper-windmill": (0.9225, 0.9833, 0.3253, 0.9250), "spin": (0.8510, 0.9585, 0.3832, 0.9073),
    "teddy": (0.8521, 0.9676, 0.5630, 0.8475), MEAN: (0.8603, 0.9712, 0.4827, 0.8464),
}

# HiMoR Table 4 (Nvidia, per scene; its Mean row is Table 2): PSNR, SSIM, LPIPS.
_T4 = ("nv_psnr", "nv_ssim", "nv_lpips")
_HIMOR_T4 = {
    "balloon1": (23.901, 0.7978, 0.06200), "balloon2": (23.483, 0.8261, 0.07540),
    "jumping": (20.042, 0.6910, 0.15978), "playground": (17.125, 0.5784, 0.14942),
    "skating": (27.561, 0.9151, 0.05803), "truck": (27.400, 0.8761, 0.04862),
    "umbrella": (24.295, 0.6504, 0.10269), MEAN: (23.401, 0.7621, 0.09370),
}
_SOM_T4 = {
    "balloon1": (23.692, 0.7919, 0.06336), "balloon2": (23.037, 0.8155, 0.07606),
    "jumping": (19.906, 0.6692, 0.17004), "playground": (16.976, 0.5745, 0.15110),
    "skating": (27.530, 0.9141, 0.05514), "truck": (27.569, 0.8738, 0.04830),
    "umbrella": (24.318, 0.6567, 0.09221), MEAN: (23.290, 0.7565, 0.09374),
}

# SirenPose Table II: ATE, RPE-Trans, RPE-Rot per dataset (Sintel, Bonn, DAVIS).
_T2 = ("ate", "rpe_trans", "rpe_rot")
_MONST3R_T2 = {"sintel": (0.112, 0.046, 0.693), "bonn": (0.097, 0.032, 0.732), "davis": (0.137, 0.052, 0.824)}
_SIRENPOSE_T2 = {"sintel": (0.097, 0.030, 0.437), "bonn": (0.084, 0.017, 0.476), "davis": (0.117, 0.037, 0.684)}

PUBLISHED: list[Published] = [
    *_rows("dycheck", "HiMoR Table 1", HIMOR, _T1, _HIMOR_T1),
    *_rows("dycheck", "HiMoR Table 1", SOM, _T1, _SOM_T1),
    *_rows("nvidia", "HiMoR Table 4 (mean: Table 2)", HIMOR, _T4, _HIMOR_T4),
    *_rows("nvidia", "HiMoR Table 4 (mean: Table 2)", SOM, _T4, _SOM_T4),
    *_rows("pose", "SirenPose Table II", MONST3R, _T2, _MONST3R_T2),
    *_rows("pose", "SirenPose Table II", SIRENPOSE, _T2, _SIRENPOSE_T2),
]

#: Why a method has no number under a protocol (shown in the table's notes).
GAPS: dict[tuple[str, str], str] = {
    ("dycheck", MOSCA): "HiMoR Table 1 leaves MoSca out (HiMoR: \"its code is not yet publicly available\")",
    ("dycheck", MONST3R): "MonST3R is a pose / geometry method: no novel-view or PCK-T numbers in these papers",
    ("dycheck", SIRENPOSE): "SirenPose reports no iPhone (DyCheck) results",
    ("som", HIMOR): "HiMoR does not report Shape of Motion's 3D tracking metrics",
    ("som", SOM): "Shape of Motion's own paper is not among the project's paper texts; its numbers are not copied",
    ("som", MOSCA): "not in the papers read (HiMoR, SirenPose)",
    ("som", MONST3R): "not in the papers read (HiMoR, SirenPose)",
    ("som", SIRENPOSE): "SirenPose reports no iPhone (DyCheck) results",
    ("nvidia", MOSCA): "HiMoR Table 2 / 4 do not include MoSca",
    ("nvidia", MONST3R): "no Nvidia novel-view numbers in these papers",
    ("nvidia", SIRENPOSE): "SirenPose reports no Nvidia results",
    ("pose", HIMOR): "HiMoR uses the datasets' cameras and reports no pose errors",
    ("pose", SOM): "not in SirenPose Table II",
    ("pose", MOSCA): "SirenPose compares with MoSca on DAVIS video quality (Table I), not on poses",
}


def published(protocol: str) -> list[Published]:
    return [p for p in PUBLISHED if p.protocol == protocol]
