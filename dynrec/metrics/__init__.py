"""Metrics: plain functions on arrays / tensors, and the registry ``evaluate`` uses.

Conventions are in :mod:`dynrec.metrics.base`; definitions, units and references in
``docs/metrics.md``. Model-based metrics take a model built by a ``load_*`` function, which
raises :class:`WeightsMissing` (a :class:`MetricNotComputable`, itself a
:class:`~dynrec.errors.DynrecError`) when its weights are not available offline.

``METRICS`` maps the names users type (``--metrics fvd,lpips,ate``) to a
:class:`MetricInfo`; ``needs`` uses the vocabulary of ``NEEDS``.
"""

from __future__ import annotations

from dynrec.metrics.base import MetricInfo, MetricNotComputable
from dynrec.metrics.clip import ClipScorer, clip_i, clip_t, clip_temporal_consistency, load_clip
from dynrec.metrics.frechet import (
    feature_stats,
    fid,
    frechet_distance,
    frechet_distance_from_stats,
    fvd,
    i3d_features,
    inception_features,
    load_i3d,
    load_inception,
    video_clips,
)
from dynrec.metrics.image import psnr, ssim, ssim_map
from dynrec.metrics.keypoints import LayoutMatch, joint_key, match_layouts
from dynrec.metrics.lpips import LPIPSModel, load_lpips, lpips
from dynrec.metrics.pose import (
    Sim3,
    TrajectoryErrors,
    align_trajectory,
    ate,
    rpe,
    trajectory_errors,
    umeyama,
)
from dynrec.metrics.tracks import (
    epe_2d,
    epe_3d,
    motion_smoothness,
    pck_t,
    temporal_jitter,
    warp_error,
    within_3d,
)
from dynrec.metrics.weights import WeightsMissing, find_weights

#: What a metric may need; ``evaluate`` checks these before computing.
NEEDS: dict[str, str] = {
    "input_video": "the input frames and renders at the training cameras (always available after recon)",
    "gt_heldout": "ground-truth images at held-out cameras and renders there",
    "covis_masks": "co-visibility masks of the held-out views (DyCheck)",
    "gt_cameras": "ground-truth camera poses for every input frame",
    "gt_tracks_2d": "ground-truth 2D tracks with visibility, and the model's projected tracks",
    "gt_tracks_3d": "ground-truth 3D tracks and the model's 3D trajectories of the same points",
    "gt_keypoints": "ground-truth 2D keypoints, and the model's keypoints (recon/keypoints: SirenPose anchors)",
    "gt_keypoint_pairs": "ground-truth keypoints annotated at several frames (DyCheck), carried by the trained model",
    "gt_keypoint_depth": "ground-truth keypoints with depth-lifted 3D positions (an imported dataset's keypoint_depth.npz)",
    "pred_tracks": "trajectories of points tracked through the reconstruction (2D or 3D)",
    "tracks": "2D tracks of the input video (the tracks stage), to follow points in renders",
    "masks": "foreground masks of the input video (the masks stage)",
    "text_prompt": "a text prompt describing the video",
    "weights:lpips": "AlexNet backbone + LPIPS heads",
    "weights:clip": "a CLIP checkpoint (transformers)",
    "weights:inception": "inception-2015-12-05.pt (TorchScript)",
    "weights:i3d": "i3d_torchscript.pt (TorchScript)",
}

_M = MetricInfo
METRICS: dict[str, MetricInfo] = {
    m.name: m
    for m in [
        _M(
            "psnr",
            "dB",
            True,
            ("input_video",),
            "PSNR of renders at the training cameras vs the input frames",
        ),
        _M(
            "psnr_fg",
            "dB",
            True,
            ("input_video", "masks"),
            "PSNR of renders at the training cameras inside the foreground masks (the subject alone: a "
            "static background can carry the whole-image PSNR while the subject is a ghost)",
        ),
        _M(
            "ssim",
            "",
            True,
            ("input_video",),
            "SSIM (11-tap Gaussian, sigma 1.5) vs the input frames",
        ),
        _M(
            "lpips",
            "",
            False,
            ("input_video", "weights:lpips"),
            "LPIPS (AlexNet, v0.1) vs the input frames",
        ),
        _M(
            "mpsnr",
            "dB",
            True,
            ("gt_heldout", "covis_masks"),
            "co-visibility masked PSNR on held-out views (DyCheck)",
        ),
        _M(
            "mssim",
            "",
            True,
            ("gt_heldout", "covis_masks"),
            "co-visibility masked SSIM on held-out views (DyCheck)",
        ),
        _M(
            "mlpips",
            "",
            False,
            ("gt_heldout", "covis_masks", "weights:lpips"),
            "co-visibility masked LPIPS on held-out views (DyCheck)",
        ),
        _M(
            "clip_i",
            "cosine",
            True,
            ("input_video", "weights:clip"),
            "CLIP image similarity of renders and input frames",
        ),
        _M(
            "clip_t",
            "cosine",
            True,
            ("input_video", "text_prompt", "weights:clip"),
            "CLIP similarity of renders and a prompt",
        ),
        _M(
            "tc_clip",
            "cosine",
            True,
            ("input_video", "weights:clip"),
            "temporal consistency: CLIP similarity of consecutive rendered frames",
        ),
        _M(
            "tc_warp",
            "intensity",
            False,
            ("input_video", "tracks"),
            "temporal consistency: photometric error of renders along input-video tracks, consecutive frames",
        ),
        _M(
            "fid",
            "",
            False,
            ("input_video", "weights:inception"),
            "Fréchet Inception Distance, renders vs input frames",
        ),
        _M(
            "fvd",
            "",
            False,
            ("input_video", "weights:i3d"),
            "Fréchet Video Distance (I3D, 16-frame clips)",
        ),
        _M(
            "ate",
            "scene units",
            False,
            ("gt_cameras",),
            "absolute trajectory error (RMSE) after Sim(3) alignment",
        ),
        _M(
            "rpe_trans",
            "scene units",
            False,
            ("gt_cameras",),
            "relative translation error (RMSE, 1 frame)",
        ),
        _M("rpe_rot", "deg", False, ("gt_cameras",), "relative rotation error (RMSE, 1 frame)"),
        _M(
            "pck_t",
            "fraction",
            True,
            ("gt_tracks_2d",),
            "2D track points within 0.05 max(H, W) of ground truth",
        ),
        _M("epe_3d", "scene units", False, ("gt_tracks_3d",), "3D track end-point error"),
        _M(
            "kp_err",
            "px",
            False,
            ("gt_keypoints",),
            "keypoint 2D error: mean pixel distance of the model's keypoints to the ground truth",
        ),
        _M(
            "kp_pck",
            "fraction",
            True,
            ("gt_keypoints",),
            "keypoints within 0.05 max(H, W) of ground truth (PCK-T on keypoints)",
        ),
        _M(
            "nv_psnr",
            "dB",
            True,
            ("gt_heldout",),
            "PSNR of held-out views over the full image (Nvidia dynamic scenes protocol)",
        ),
        _M(
            "nv_ssim",
            "",
            True,
            ("gt_heldout",),
            "SSIM of held-out views over the full image (Nvidia protocol)",
        ),
        _M(
            "nv_lpips",
            "",
            False,
            ("gt_heldout", "weights:lpips"),
            "LPIPS of held-out views over the full image (Nvidia protocol)",
        ),
        _M(
            "pck_t_kp",
            "fraction",
            True,
            ("gt_keypoint_pairs",),
            "keypoints carried between annotated frame pairs within 0.05 max(H, W) (DyCheck PCK-T)",
        ),
        _M(
            "apck_kp",
            "fraction",
            True,
            ("gt_keypoint_pairs",),
            "keypoints carried between annotated frames, mean PCK at 4-64 px of 1x (Shape of Motion APCK)",
        ),
        _M(
            "epe_3d_kp",
            "scene units",
            False,
            ("gt_keypoint_pairs", "gt_keypoint_depth"),
            "3D error of keypoints carried between annotated frames, after Sim(3) (Shape of Motion EPE)",
        ),
        _M(
            "pck_3d_5cm",
            "fraction",
            True,
            ("gt_keypoint_pairs", "gt_keypoint_depth"),
            "carried keypoints within 5 cm in 3D after Sim(3) (Shape of Motion)",
        ),
        _M(
            "pck_3d_10cm",
            "fraction",
            True,
            ("gt_keypoint_pairs", "gt_keypoint_depth"),
            "carried keypoints within 10 cm in 3D after Sim(3) (Shape of Motion)",
        ),
        _M(
            "jitter",
            "px",
            False,
            ("pred_tracks",),
            "distance of tracked points to a local quadratic fit (5 frames)",
        ),
        _M(
            "smoothness",
            "px/frame^2",
            False,
            ("pred_tracks",),
            "mean acceleration of tracked points",
        ),
    ]
}

__all__ = [
    "METRICS",
    "NEEDS",
    "ClipScorer",
    "LPIPSModel",
    "LayoutMatch",
    "MetricInfo",
    "MetricNotComputable",
    "Sim3",
    "TrajectoryErrors",
    "WeightsMissing",
    "align_trajectory",
    "ate",
    "clip_i",
    "clip_t",
    "clip_temporal_consistency",
    "epe_2d",
    "epe_3d",
    "feature_stats",
    "fid",
    "find_weights",
    "frechet_distance",
    "frechet_distance_from_stats",
    "fvd",
    "i3d_features",
    "inception_features",
    "joint_key",
    "load_clip",
    "load_i3d",
    "load_inception",
    "load_lpips",
    "lpips",
    "match_layouts",
    "motion_smoothness",
    "pck_t",
    "psnr",
    "rpe",
    "ssim",
    "ssim_map",
    "temporal_jitter",
    "trajectory_errors",
    "umeyama",
    "video_clips",
    "warp_error",
    "within_3d",
]
