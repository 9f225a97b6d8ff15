"""recon: optimise canonical Gaussians and their motion (HiMoR, Eq. 7 with Appendix B weights).

Checkpoints go into the stage's ``.checkpoints`` folder every ``checkpoint_every`` steps, so
an interrupted run resumes with the same key. A loss that turns NaN stops the run with the
term named; the last good checkpoint is kept.

SirenPose (``docs/sirenpose.md``): ``sirenpose`` picks a row of its Table III (``off``,
``geo``: + keypoint loss L_pos + lambda_geo L_geo, ``siren``: + SIREN residual on the leaf
motions, ``full``: both). Keypoint anchors are built whenever the keypoints input exists
(``keypoints``), so every row writes ``recon/keypoints`` for evaluation; only ``geo`` and
``full`` train them. ``camera_refine`` optimises per-frame corrections of the input cameras
and writes them to ``recon/cameras``.

The stage knows nothing about ground truth: held-out cameras are rendered from the saved
model by ``dynrec evaluate`` and ``dynrec render --path heldout``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from dynrec.artifacts import Cameras, Depth, Frames, Keypoints, Lift, Masks, Tracks
from dynrec.errors import DynrecError
from dynrec.geometry.lift import project_points, sample_depth
from dynrec.metrics import psnr
from dynrec.model import losses as L
from dynrec.model.camera_refine import CameraRefiner
from dynrec.model.density import DensityConfig, DensityControl
from dynrec.model.gaussians import GaussianLRs, Gaussians
from dynrec.model.himor import GlobalBases, MotionLRs, MotionTree, TreeConfig, knn_curve
from dynrec.model.restore import restore_scene
from dynrec.model.scene import DynamicScene, render_sequence
from dynrec.model.sirenpose import KeypointAnchors, SirenResidual, sirenpose_loss, track_guess
from dynrec.model.timing import StepTimer
from dynrec.stages.base import StageContext, StageSpec

MOTIONS = ("himor", "global-bases")
#: SirenPose Table III rows: baseline, + geometric (keypoint) prior, + SIREN stream, both.
SIRENPOSE_MODES = ("off", "geo", "siren", "full")


@dataclass
class ReconParams:
    """Optimisation settings; every loss weight can be set to 0 to switch its term off.

    ``motion``: himor | global-bases; ``skinning``: how a Gaussian's leaves are chosen,
    ``curve`` (those that move most like it) or ``canonical`` (HiMoR: nearest in the
    canonical frame), see :mod:`dynrec.model.skinning`; ``levels``: 1 | 2 (HiMoR level 2 switched on at
    ``level2_at`` x steps); ``rigidity`` and ``node_densify`` toggle those parts (HiMoR
    Table 3 rows); ``lr_scale`` multiplies every learning rate of Appendix B.2 and
    ``lr_final`` is the factor they decay to (exponentially) by the last step.
    ``gaussian_densify`` switches 3DGS density control (clone / split / prune, see
    :mod:`dynrec.model.density`) on between ``gaussian_densify_from`` and ``_until`` x steps,
    every ``gaussian_densify_every`` steps, up to ``max_gaussians``.

    SirenPose (``docs/sirenpose.md``): ``sirenpose`` = off | geo | siren | full (Table III
    rows: ``geo`` adds the keypoint loss ``lambda_sp (L_pos + lambda_geo L_geo)`` (Eq. 5-8)
    with ``kp_w0``, ``kp_freqs``, ``kp_quadrature``; ``siren`` adds the SIREN residual
    ``siren_lambda * g(x, t)`` on the leaf motions (HiMoR only); ``full`` both).
    ``keypoints``: build keypoint anchors when the keypoints input exists (written to
    ``recon/keypoints`` in every mode; trained only with the keypoint loss).
    ``camera_refine``: learn per-frame SE(3) corrections of the input cameras, regularised
    toward them with weight ``camera_reg``. ``lr_anchors``, ``lr_siren``, ``lr_camera`` are
    Adam learning rates (times ``lr_scale``).

    ``schedule``: auto | cpu | gpu picks the values of ``steps``, ``batch_frames``,
    ``lr_scale``, ``lr_final`` and ``gaussian_densify`` that are not set (None) from
    :data:`SCHEDULES`; ``auto`` is ``gpu`` on CUDA and ``cpu`` otherwise. The stage's key
    hashes the resolved values (:func:`resolve_schedule`), so a CPU and a GPU run never
    share a result.
    """

    schedule: str = "auto"
    steps: int | None = None
    batch_frames: int | None = None
    motion: str = "himor"
    levels: int = 2
    level2_at: float = 0.5
    rigidity: bool = True
    node_densify: bool = True
    densify_every: int = 100
    densify_until: float = 0.5
    densify_threshold: float = 0.05
    densify_max_new: int = 10
    gaussian_densify: bool | None = None
    gaussian_densify_from: float = 0.1
    gaussian_densify_until: float = 0.7
    gaussian_densify_every: int = 50
    gaussian_grow_grad2d: float = 2e-4
    max_gaussians: int = 200_000
    lr_scale: float | None = None
    lr_final: float | None = None
    init_opacity: float = 0.5
    checkpoint_every: int = 100
    log_every: int = 10
    seed: int = 0
    skinning: str = "curve"
    weights: dict[str, float] = field(default_factory=dict)
    sirenpose: str = "off"
    keypoints: bool = True
    lambda_sp: float = 1.0
    lambda_geo: float = 1.0
    kp_w0: float = 30.0
    kp_freqs: tuple[float, ...] = (1.0,)
    kp_quadrature: bool = False
    siren_lambda: float = 1.0
    siren_hidden: int = 64
    siren_layers: int = 3
    siren_w0: float = 30.0
    camera_refine: bool = False
    camera_reg: float = 1e-2
    lr_anchors: float = 1.6e-4
    lr_siren: float = 1e-4
    lr_camera: float = 5e-4

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"tiny": {"steps": 150, "checkpoint_every": 50, "lr_scale": 5.0}}

    @property
    def keypoint_loss(self) -> bool:
        """The SirenPose keypoint loss is on (``geo`` / ``full`` with ``lambda_sp > 0``)."""
        return self.sirenpose in ("geo", "full") and self.lambda_sp > 0

    @property
    def siren(self) -> bool:
        """The SIREN residual stream is on (``siren`` / ``full``)."""
        return self.sirenpose in ("siren", "full")


#: Default optimisation schedules per device (fields of :class:`ReconParams` left unset).
#: ``cpu``: few steps, so learning rates start 5x the paper's and decay 20x, and density
#: control is off (at this length clones cost more than they give): ``synth small`` in
#: minutes on 2 cores (bench/results/recon.json). ``gpu``: HiMoR Appendix B.2's rates held
#: constant, 3DGS density control on, more steps and frames per step.
SCHEDULES: dict[str, dict[str, Any]] = {
    "cpu": {"steps": 600, "batch_frames": 2, "lr_scale": 5.0, "lr_final": 0.05, "gaussian_densify": False},
    "gpu": {"steps": 3000, "batch_frames": 4, "lr_scale": 1.0, "lr_final": 1.0, "gaussian_densify": True},
}


def resolve_schedule(params: ReconParams, device: torch.device | str) -> ReconParams:
    """``params`` as they run on ``device``: ``schedule`` made concrete (``auto``: ``gpu`` on
    CUDA, else ``cpu``) and every unset schedule field taken from :data:`SCHEDULES`; values
    set explicitly win. Idempotent."""
    name = params.schedule
    if name == "auto":
        name = "gpu" if torch.device(device).type == "cuda" else "cpu"
    if name not in SCHEDULES:
        raise DynrecError(f"recon.schedule must be auto, {' or '.join(SCHEDULES)}, got '{params.schedule}'")
    fills = {k: v for k, v in SCHEDULES[name].items() if getattr(params, k) is None}
    return replace(params, schedule=name, **fills)


def check_params(params: ReconParams) -> None:
    """Errors that name the setting, before any work."""
    if params.schedule not in ("auto", *SCHEDULES):
        raise DynrecError(f"recon.schedule must be auto, {' or '.join(SCHEDULES)}, got '{params.schedule}'")
    if params.levels not in (1, 2):
        raise DynrecError(f"recon.levels must be 1 or 2, got {params.levels}")
    if params.motion not in MOTIONS:
        raise DynrecError(f"recon.motion must be one of {', '.join(MOTIONS)}, got '{params.motion}'")
    if params.sirenpose not in SIRENPOSE_MODES:
        raise DynrecError(f"recon.sirenpose must be one of {', '.join(SIRENPOSE_MODES)}, got '{params.sirenpose}'")
    if params.siren and params.motion != "himor":
        raise DynrecError(f"recon.sirenpose={params.sirenpose}: the SIREN stream is a residual on HiMoR leaf "
                          "nodes, so it needs recon.motion=himor (use recon.sirenpose=geo with global-bases)")
    if params.skinning not in ("curve", "canonical"):
        raise DynrecError(f"recon.skinning must be 'curve' or 'canonical', got '{params.skinning}'")
    if params.camera_reg < 0:
        raise DynrecError(f"recon.camera_reg must be >= 0, got {params.camera_reg}")
    for name in ("steps", "batch_frames"):
        value = getattr(params, name)
        if value is not None and value < 1:
            raise DynrecError(f"recon.{name} must be >= 1, got {value}")


def _loss_weights(params: ReconParams) -> L.LossWeights:
    w = L.LossWeights()
    for name, value in params.weights.items():
        if not hasattr(w, name):
            raise DynrecError(f"recon.weights: unknown loss '{name}'; known: {', '.join(asdict(w))}")
        setattr(w, name, float(value))
    if not params.rigidity:
        w.rigid_level1 = w.rigid_level1_with_level2 = w.rigid_level2 = 0.0
    return w


@dataclass
class KeypointData:
    """Input keypoints: ``xy`` [T, J, 2] pixels (0 where not detected), ``conf`` [T, J],
    ``skeleton`` [E, 2] long, ``names`` J strings."""

    xy: torch.Tensor
    conf: torch.Tensor
    skeleton: torch.Tensor
    names: list[str]


@dataclass
class Data:
    """Training data as tensors: images [T,H,W,3], masks [T,H,W,1], depth [T,H,W,1],
    K [T,3,3], w2c [T,4,4], track points (canonical [P,3], xy [P,T,2], visible [P,T]);
    ``keypoints`` when the keypoints input exists."""

    images: torch.Tensor
    masks: torch.Tensor
    depth: torch.Tensor
    K: torch.Tensor
    w2c: torch.Tensor
    track_canonical: torch.Tensor
    track_xy: torch.Tensor
    track_visible: torch.Tensor
    lift: Lift
    keypoints: KeypointData | None = None

    @property
    def T(self) -> int:
        return self.images.shape[0]

    @property
    def size(self) -> tuple[int, int]:
        return self.images.shape[2], self.images.shape[1]


def load_keypoints(folder: Path | None, device: torch.device | str = "cpu") -> KeypointData | None:
    """The keypoints input as tensors, or None when there is none (or it has no keypoint)."""
    if folder is None or not (folder / Keypoints.FILE).is_file():
        return None
    kp = Keypoints.load(folder)
    if kp.xy.shape[1] == 0:
        return None
    conf = np.nan_to_num(kp.confidence.astype(np.float32)).clip(0, 1)
    ok = (conf > 0) & np.isfinite(kp.xy).all(-1)
    xy = np.where(ok[..., None], kp.xy, 0).astype(np.float32)
    return KeypointData(torch.from_numpy(xy).to(device),
                        torch.from_numpy(np.where(ok, conf, 0).astype(np.float32)).to(device),
                        torch.from_numpy(np.asarray(kp.skeleton, np.int64).reshape(-1, 2)).to(device), list(kp.names))


def load_data(ctx: StageContext, device: torch.device | str = "cpu") -> Data:
    """Every input the optimisation reads, as tensors on ``device``."""
    frames = Frames.load(ctx.inputs["frames"])
    cams = Cameras.load(ctx.inputs["cameras"])
    tracks = Tracks.load(ctx.inputs["tracks"])
    lift = Lift.load(ctx.inputs["lift"])
    f = lambda a: torch.from_numpy(np.ascontiguousarray(a)).float().to(device)
    return Data(
        images=f(frames.images / 255.0), masks=f(Masks.load(ctx.inputs["masks"]).masks[..., None]),
        depth=f(Depth.load(ctx.inputs["align"]).depth[..., None]), K=f(cams.K), w2c=f(cams.w2c),
        track_canonical=f(lift.xyz[:, lift.canonical]), track_xy=f(tracks.xy[lift.track_index]),
        track_visible=torch.from_numpy(tracks.visible[lift.track_index]).to(device), lift=lift,
        keypoints=load_keypoints(ctx.inputs.get("keypoints"), device),
    )


def build_scene(lift: Lift, params: ReconParams, device: torch.device | str = "cpu") -> DynamicScene:
    """Gaussians from the lifted point clouds; motion from the lifted bases and nodes (on ``device``)."""
    fg = torch.from_numpy(lift.fg_points).float()
    bg = torch.from_numpy(lift.bg_points).float()
    points = torch.cat([bg, fg])
    colors = torch.from_numpy(np.concatenate([lift.bg_colors, lift.fg_colors])).float().clamp(0.02, 0.98)
    is_fg = torch.cat([torch.zeros(len(bg), dtype=torch.bool), torch.ones(len(fg), dtype=torch.bool)])
    bases = torch.from_numpy(lift.bases).float()
    if params.motion == "himor":
        motion = MotionTree.from_bases(bases, torch.from_numpy(lift.node_positions).float(),
                                       torch.from_numpy(lift.node_coefficients).float(),
                                       torch.from_numpy(lift.node_radii).float().clamp_min(1e-4),
                                       TreeConfig(skin_by=params.skinning))
        coefs = None
    elif params.motion == "global-bases":
        motion = GlobalBases.from_bases(bases)
        coefs = GlobalBases.init_coefficients(points, torch.from_numpy(lift.centres).float())
    else:
        raise DynrecError(f"recon.motion must be one of {', '.join(MOTIONS)}, got '{params.motion}'")
    gaussians = Gaussians.from_points(points, colors, is_fg, opacity=params.init_opacity, motion_coefs=coefs)
    residual = make_residual(fg, motion.num_frames, params) if params.siren and params.motion == "himor" else None
    return DynamicScene(gaussians, motion, residual).to(device)


def make_residual(fg_points: torch.Tensor, num_frames: int, params: ReconParams) -> SirenResidual:
    """The SIREN stream (SirenPose Eq. 1-4) with its inputs normalised to the foreground's box."""
    lo, hi = fg_points.amin(dim=0), fg_points.amax(dim=0)
    extent = float((hi - lo).max()) / 2 if len(fg_points) else 1.0
    return SirenResidual(num_frames, (lo + hi) / 2, max(extent, 1e-3), params.siren_hidden, params.siren_layers,
                         params.siren_w0, params.siren_lambda)


def scene_scale(data: Data) -> float:
    """Median distance from the lifted points to the camera centres (density control's scene
    scale and the unit of the camera refinement's translations)."""
    lift = data.lift
    points = torch.from_numpy(np.concatenate([lift.bg_points, lift.fg_points])).float().to(data.w2c.device)
    centres = torch.linalg.inv(data.w2c)[:, :3, 3]
    return float(torch.cdist(points[::max(len(points) // 4096, 1)], centres).median())


def make_anchors(scene: DynamicScene, data: Data) -> KeypointAnchors:
    """Keypoint anchors lifted at their most confident frames (ties: nearest the lift's
    canonical frame) and mapped to the canonical frame, starting from the nearest lifted track.

    Keypoints belong to the moving figure, so they are lifted with the depth inside the
    foreground mask only: a keypoint a pixel off a thin limb (detector noise) would otherwise
    take the background's depth, metres behind the figure. Frames where it falls off the mask
    (or on its edge) are then not candidates (``lift_anchors``).
    """
    kp, lift = data.keypoints, data.lift
    assert kp is not None
    traj = torch.from_numpy(lift.xyz).float().to(data.depth.device)
    x0_fn = partial(track_guess, trajectories=traj, canonical=traj[:, lift.canonical]) if len(traj) else None
    depth = data.depth[..., 0] * (data.masks[..., 0] > 0.5)
    if not bool((depth > 0).any()):
        depth = data.depth[..., 0]
    return KeypointAnchors.from_keypoints(kp.xy, kp.conf, depth, data.K, data.w2c, scene,
                                          prefer_frame=int(lift.canonical), x0_fn=x0_fn)


class Trainer:
    """One optimisation run: the scene, its Adam, the step counter and checkpoints.

    With SirenPose: ``anchors`` (keypoint anchors, None without keypoints) and ``refiner``
    (per-frame camera corrections, None unless ``camera_refine``); the SIREN residual lives
    in the scene (``scene.residual``).
    """

    def __init__(self, scene: DynamicScene, data: Data, params: ReconParams, ckpt: Path):
        check_params(params)
        params = resolve_schedule(params, data.images.device)
        self.scene, self.data, self.params, self.ckpt = scene, data, params, ckpt
        self.weights = _loss_weights(params)
        self.step = 0
        self.saved_step = 0  # step of the last checkpoint written or resumed from (0: none)
        self.level2_done = False
        self.gen = torch.Generator().manual_seed(params.seed)  # CPU: frame sampling, density noise
        self.device = data.images.device
        self._knn: list[torch.Tensor] = []
        self._views: list[tuple[dict, torch.Tensor, int]] = []  # (info, ids, cameras) of this step's render
        self.timer = StepTimer(self.device)
        self.density = density_control(params, data) if params.gaussian_densify else None
        if params.keypoint_loss and (data.keypoints is None or not params.keypoints):
            why = "recon.keypoints is off" if not params.keypoints else "the keypoints input has no keypoints"
            raise DynrecError(f"recon.sirenpose={params.sirenpose} needs keypoints, but {why}; "
                              "use recon.sirenpose=off or siren, or lambda_sp=0")
        self.anchors = make_anchors(scene, data) if params.keypoints and data.keypoints is not None else None
        if self.anchors is not None and not params.keypoint_loss:
            self.anchors.canonical.requires_grad_(False)  # evaluated only: no loss moves them
        self.refiner = CameraRefiner(data.w2c, scene_scale(data)) if params.camera_refine else None
        self.kp_error_init = self.keypoint_error()
        self._build_optimizer()

    def _build_optimizer(self) -> None:
        p = self.params
        s = p.lr_scale
        glr, mlr = GaussianLRs(), MotionLRs()
        glr = GaussianLRs(**{k: v * s for k, v in asdict(glr).items()})
        mlr = MotionLRs(**{k: v * s for k, v in asdict(mlr).items()})
        groups = self.scene.gaussians.param_groups(glr) + self.scene.motion.param_groups(mlr)
        if self.anchors is not None and p.keypoint_loss:
            groups.append(self.anchors.param_group(p.lr_anchors * s))
        if self.scene.residual is not None:
            groups.append(self.scene.residual.param_group(p.lr_siren * s))
        if self.refiner is not None:
            groups.append(self.refiner.param_group(p.lr_camera * s))
        old = getattr(self, "opt", None)
        self.opt = torch.optim.Adam(groups, eps=1e-15)
        if old is not None:
            # Tensors that survived the structure change keep their Adam moments: a fresh
            # Adam's first steps move every parameter by ~lr at once, a jolt that undoes
            # training each time nodes are added.
            for group in self.opt.param_groups:
                for param in group["params"]:
                    if param in old.state:
                        self.opt.state[param] = old.state[param]
        self.scene.refresh_skinning()
        self._knn = []

    def w2c(self, ts: torch.Tensor) -> torch.Tensor:
        """Training cameras [B, 4, 4] at frames ``ts``: refined (differentiable) or the input."""
        return self.refiner.w2c(ts) if self.refiner is not None else self.data.w2c[ts]

    def cameras(self) -> torch.Tensor:
        """All training cameras [T, 4, 4], detached (refined when camera refinement is on)."""
        return self.refiner.refined_all() if self.refiner is not None else self.data.w2c

    def project_keypoints(self, ts: torch.Tensor, w2c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``k̂(t)``: anchors at frames ``ts`` projected with ``w2c`` [B, 4, 4]: xy [B, J, 2], z [B, J]."""
        assert self.anchors is not None
        return self.anchors.project(self.scene, ts, self.data.K[ts], w2c)

    @torch.no_grad()
    def keypoint_error(self) -> float | None:
        """Mean pixel distance of the projected anchors to the input keypoints (where detected
        and in front of the camera), over every frame; None without anchors."""
        kp = self.data.keypoints
        if self.anchors is None or kp is None:
            return None
        ts = torch.arange(self.data.T)
        xy, z = self.project_keypoints(ts, self.cameras())
        ok = (kp.conf > 0) & (z > 0)
        return float((xy - kp.xy).norm(dim=-1)[ok].mean()) if bool(ok.any()) else None

    def _rigidity_knn(self) -> list[torch.Tensor]:
        if not self._knn or self.step % 100 == 0:
            with torch.no_grad():
                self._knn = [knn_curve(self.scene.motion.node_trajectories(k), 8)
                             for k in range(self.scene.motion.num_levels)]
        return self._knn

    def losses(self, ts: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Eq. 7 with Appendix B.1 terms for the batch frames ``ts`` [B]: ``(total, {term: value})``.

        Terms whose weight is 0 are not computed (:func:`dynrec.model.losses.weighted_sum`).
        """
        d, scene, timer = self.data, self.scene, self.timer
        W, H = d.size
        B = len(ts)
        with timer.part("deform"):
            w2c = self.w2c(ts)
            fg_means, fg_quats = scene.deform_foreground(ts)  # [B, Gf, ·]: all frames at once
            pts = scene.deform_points(d.track_canonical, torch.cat([ts - 1, ts, ts + 1]).clamp(0, d.T - 1),
                                      "tracks")
        with timer.part("rasterize"):
            out = scene.render_frames(fg_means, fg_quats, d.K[ts], w2c, W, H)  # one call for the B frames
        rgb, fg, depth = out.rgb, out.fg, out.depth
        if self.density is not None and torch.is_grad_enabled():
            out.info["means2d"].retain_grad()
            self._views = [(out.info, out.ids, B)]
        with timer.part("losses"):
            return self._loss_terms(ts, w2c, rgb, fg, depth, pts)

    def _loss_terms(self, ts: torch.Tensor, w2c: torch.Tensor, rgb: torch.Tensor, fg: torch.Tensor,
                    depth: torch.Tensor, pts: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The weighted terms of :meth:`losses` from the renders ``rgb`` [B, H, W, 3], ``fg``,
        ``depth`` [B, H, W, 1] and the track points ``pts`` [3B, P, 3] at frames ts-1, ts, ts+1."""
        d, scene, p = self.data, self.scene, self.params
        W, H = d.size
        B = len(ts)
        cur = pts[B:2 * B]
        xy, z = project_points(cur, d.K[ts][:, None], w2c[:, None])
        vis = d.track_visible[:, ts].T
        target_xy = d.track_xy[:, ts].transpose(0, 1)
        target_z, known = sample_depth(d.depth[ts, ..., 0], target_xy.transpose(0, 1))
        target_z = torch.where(known, target_z, torch.zeros_like(target_z)).T
        terms = {
            "rgb_mse": lambda: L.mse(rgb, d.images[ts]),
            "rgb_dssim": lambda: L.dssim(rgb, d.images[ts]),
            "mask": lambda: L.mask_loss(fg, d.masks[ts]),
            "depth": lambda: L.depth_loss(depth, d.depth[ts]),
            "depth_grad": lambda: L.depth_gradient_loss(depth, d.depth[ts]),
            "track_2d": lambda: L.track_2d_loss(xy, target_xy, vis, W, H),
            "track_depth": lambda: L.track_depth_loss(z, target_z, vis),
            "accel_tracks": lambda: L.track_acceleration_loss(pts[:B], cur, pts[2 * B:]),
            "accel_bases": lambda: L.bases_acceleration_loss(scene.motion.bases()),
            "scale": lambda: L.scale_loss(scene.gaussians.log_scales),
        }
        weights = asdict(self.weights)
        if scene.is_tree:
            tree = scene.motion
            terms["node_radius"] = lambda: sum(
                L.node_radius_loss(p, r) for p, r in zip(tree.level_positions(), tree.level_radii()))
            levels = tree.level_transforms(ts)
            for k, weight in enumerate(self.weights.rigidity_weights(len(levels))):
                name = f"rigid_level{k + 1}"
                weights[name] = weight
                terms[name] = partial(L.rigidity_loss, tree.level_positions()[k], levels[k], self._rigidity_knn()[k])
        kp_values: dict[str, torch.Tensor] = {}
        terms["sirenpose"] = partial(self._sirenpose_term, ts, w2c, kp_values)
        weights["sirenpose"] = p.lambda_sp if p.keypoint_loss and self.anchors is not None else 0.0
        terms["camera_reg"] = lambda: self.refiner.regulariser(ts)
        weights["camera_reg"] = p.camera_reg if self.refiner is not None else 0.0
        total, values = L.weighted_sum(terms, weights)
        return total, values | kp_values

    def _sirenpose_term(self, ts: torch.Tensor, w2c: torch.Tensor, values: dict[str, torch.Tensor]) -> torch.Tensor:
        """SirenPose Eq. 7 on the batch frames (Eq. 8 weighs it by ``lambda_sp``); ``values``
        receives ``kp_pos`` and ``kp_geo``."""
        kp, p = self.data.keypoints, self.params
        assert kp is not None
        W, H = self.data.size
        xy, z = self.project_keypoints(ts, w2c)
        conf = kp.conf[ts]
        loss, parts = sirenpose_loss(xy, kp.xy[ts], conf, (conf > 0) & (z > 1e-6), kp.skeleton, W, H,
                                     p.lambda_geo, p.kp_w0, p.kp_freqs, p.kp_quadrature)
        values.update(parts)
        return loss

    def structure_updates(self) -> None:
        """Level 2 and node densification on the HiMoR tree (§3.2.3, §3.2.4)."""
        p, scene = self.params, self.scene
        if not scene.is_tree:
            return
        g = scene.gaussians
        if p.levels >= 2 and not self.level2_done and self.step >= int(p.level2_at * p.steps):
            scene.motion.enable_level2(g.means[g.foreground].detach(), seed=p.seed)
            self.level2_done = True
            self._build_optimizer()
        if (p.node_densify and self.step > 0 and self.step % p.densify_every == 0
                and self.step <= p.densify_until * p.steps):
            with torch.no_grad():
                fg = g.means[g.foreground]
                sub = fg[torch.randperm(len(fg), generator=self.gen, device="cpu")[:2000].to(self.device)]
                quats = sub.new_zeros(len(sub), 4)
                quats[:, 0] = 1
                traj = scene.motion.deform(sub, quats, torch.arange(self.data.T, device=self.device))[0].transpose(0, 1)
                added = scene.motion.densify(traj, sub, p.densify_threshold, p.densify_max_new)
            if added:
                self._build_optimizer()

    def set_learning_rates(self) -> None:
        """Exponential decay from ``lr_scale`` x the paper's rates to ``lr_final`` x that at the end."""
        decay = self.params.lr_final ** (self.step / max(self.params.steps, 1))
        for group in self.opt.param_groups:
            group["lr"] = group.setdefault("base_lr", group["lr"]) * decay

    def refine_gaussians(self) -> None:
        """3DGS density control with the screen-space gradients of this step's views."""
        if self.density is None:
            return
        g = self.scene.gaussians
        W, H = self.data.size
        for info, ids, n_views in self._views:  # one render of the step's B frames, averaged in the loss
            self.density.accumulate(info["means2d"], info["radii"], ids, len(g), W, H, n_views)
        self._views = []
        if self.density.due(self.step):
            self.density.refine(g, self.opt, self.step, self.gen)
            self.scene.refresh_skinning()

    def extras_state(self) -> dict[str, dict[str, torch.Tensor]]:
        """State of the SirenPose parts outside the scene: ``anchors``, ``refiner`` (when present)."""
        parts = {"anchors": self.anchors, "refiner": self.refiner}
        return {name: m.state_dict() for name, m in parts.items() if m is not None}

    def save(self) -> None:
        state = {"step": self.step, "level2_done": self.level2_done, "scene": self.scene.state_dict(),
                 "opt": self.opt.state_dict(), "gen": self.gen.get_state(), **self.extras_state()}
        tmp = self.ckpt.with_suffix(".partial")
        torch.save(state, tmp)
        tmp.replace(self.ckpt)
        self.saved_step = self.step

    def resume(self) -> bool:
        if not self.ckpt.exists():
            return False
        state = torch.load(self.ckpt, map_location=self.device, weights_only=True)
        self.scene = restore_scene(state["scene"], self.params).to(self.device)
        for name, module in (("anchors", self.anchors), ("refiner", self.refiner)):
            if module is not None:
                module.load_state_dict(state[name])
        self.step, self.level2_done = int(state["step"]), bool(state["level2_done"])
        self.saved_step = self.step
        self._build_optimizer()
        self.opt.load_state_dict(state["opt"])
        self.gen.set_state(state["gen"])
        return True

    def run(self, progress) -> dict[str, float]:
        """Optimise to ``params.steps``. Loss values stay on the device between log points
        (every ``log_every`` steps, before each checkpoint and at the end): only then are they
        read, and a term that turned NaN/inf stops the run, naming it, before a bad state is saved."""
        p = self.params
        last: dict[str, float] = {}
        nonfinite: dict[str, torch.Tensor] = {}
        since = self.step
        while self.step < p.steps:
            self.structure_updates()
            if self.step % 100 == 0:  # skinning leaves follow the motion as it is learned
                self.scene.refresh_skinning()
            ts = torch.randperm(self.data.T, generator=self.gen, device="cpu")[: p.batch_frames].sort().values
            ts = ts.to(self.device)
            self.timer.begin(self.step % p.log_every == p.log_every // 2)  # off the refresh steps
            total, values = self.losses(ts)
            for k, v in values.items():
                flag = ~torch.isfinite(v.detach())
                nonfinite[k] = nonfinite[k] | flag if k in nonfinite else flag
            with self.timer.part("backward"):
                self.opt.zero_grad(set_to_none=True)
                total.backward()
            with self.timer.part("optimiser"):
                self.set_learning_rates()
                self.opt.step()
                self.step += 1
                self.refine_gaussians()
            self.timer.end()
            checkpoint = self.step % p.checkpoint_every == 0
            if checkpoint or self.step % p.log_every == 0 or self.step == p.steps:
                bad = [k for k, flag in nonfinite.items() if bool(flag)]
                if bad:
                    good = since - since % p.checkpoint_every
                    raise DynrecError(
                        f"recon: loss term {', '.join(bad)} became NaN/inf between steps {since} and {self.step}; "
                        f"the last good checkpoint (step {good}) is kept; lower --set recon.lr_scale or switch "
                        "that term off with --set recon.weights=..."
                    )
                nonfinite, since = {}, self.step
                last = {k: float(v.detach()) for k, v in values.items()} | {"total": float(total.detach())}
                progress(f"loss {last['total']:.4f}", self.step, p.steps)
            if checkpoint:
                self.save()
        return last


def density_control(params: ReconParams, data: Data) -> DensityControl:
    """Density control on this run's schedule; the scene scale is the median camera distance
    of the lifted points (3DGS uses the camera extent, which vanishes for a still camera)."""
    config = DensityConfig(
        refine_start=int(params.gaussian_densify_from * params.steps),
        refine_stop=int(params.gaussian_densify_until * params.steps),
        refine_every=params.gaussian_densify_every, reset_every=params.steps + 1,
        grow_grad2d=params.gaussian_grow_grad2d, max_gaussians=params.max_gaussians,
    )
    return DensityControl(config, scene_scale(data))


def render_all(scene: DynamicScene, K: torch.Tensor, w2c: torch.Tensor, width: int, height: int,
               ts: list[int], chunk: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Images [T, H, W, 3] uint8 and z-depth [T, H, W] at frames ``ts`` with cameras ``K``, ``w2c``
    [T, ...] (aligned with ``ts``), through :func:`~dynrec.model.scene.render_sequence`."""
    out = render_sequence(scene, K, w2c, ts, width, height, chunk)
    return out.rgb8, out.depth


def out_of_memory_message(trainer: Trainer | None, data: Data, params: ReconParams, device: torch.device) -> str:
    """What to do when CUDA runs out of memory: the knobs, and what was kept."""
    W, H = data.size
    where = f"at step {trainer.step} " if trainer is not None else "before training "
    count = len(trainer.scene.gaussians) if trainer is not None else len(data.lift.fg_points) + len(data.lift.bg_points)
    total = ""
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        total = f" ({props.name}, {props.total_memory / 2**30:.0f} GiB)"
    kept = (f"the last checkpoint (step {trainer.saved_step}) is kept and a rerun with the same settings resumes "
            "from it" if trainer is not None and trainer.saved_step else "no checkpoint was written yet")
    return (f"recon: CUDA ran out of memory {where}with {count} Gaussians, {W}x{H} pixels and "
            f"{params.batch_frames} frames per step{total}. Lower what a step holds: fewer frames per step "
            f"(--set recon.batch_frames={max(1, (params.batch_frames or 2) // 2)}), a lower resolution "
            "(--set frames.long_side=..., which redoes preprocessing), or a smaller Gaussian cap "
            f"(--set recon.max_gaussians=...); {kept} (changed settings start over).")


def run(ctx: StageContext, params: ReconParams) -> dict[str, Any]:
    check_params(params)
    device = torch.device(ctx.device)
    params = resolve_schedule(params, device)
    if device.type == "cuda":  # before any work: a missing gsplat or nvcc is named at once
        from dynrec.render.gsplat_backend import check_gsplat

        check_gsplat()
    torch.manual_seed(params.seed)
    ctx.progress("setup: loading the inputs", 0, 3)  # the setup takes tens of seconds on a CPU: say so
    data = load_data(ctx, device)
    trainer: Trainer | None = None
    try:
        ctx.progress("setup: building the Gaussians and the motion tree", 1, 3)
        scene = build_scene(data.lift, params, device)
        ctx.progress("setup: preparing the optimiser", 2, 3)
        trainer = Trainer(scene, data, params, ctx.checkpoints / "state.pt")
        return _train_and_write(ctx, trainer, params, data, device)
    except torch.cuda.OutOfMemoryError as exc:
        raise DynrecError(out_of_memory_message(trainer, data, params, device)) from exc


def _train_and_write(ctx: StageContext, trainer: Trainer, params: ReconParams, data: Data,
                     device: torch.device) -> dict[str, Any]:
    """Optimise (resuming from a checkpoint), then write the model, renders and tracks."""
    resumed_at = trainer.step if trainer.resume() else 0
    if resumed_at:
        ctx.console.print(f"  recon: resuming from the checkpoint at step {resumed_at}")
    final = trainer.run(ctx.progress)
    scene = trainer.scene
    # leaves chosen afresh, as a scene restored from model.pt chooses them: the renders and
    # tracks written here are then what every later reader of the model renders
    scene.refresh_skinning()
    torch.save({"scene": scene.state_dict(), **trainer.extras_state()}, ctx.out / "model.pt")
    meta = {"motion": params.motion, "frames": data.T, "gaussians": len(scene.gaussians),
            "foreground": int(scene.gaussians.foreground.sum()), "params": asdict(params),
            "levels": scene.motion.num_levels if scene.is_tree else 0, "sirenpose": params.sirenpose}
    (ctx.out / "model.json").write_text(json.dumps(meta, indent=2))
    W, H = data.size
    frames_meta = Frames.load_meta(ctx.inputs["frames"])
    ts = list(range(data.T))
    w2c = trainer.cameras()
    if trainer.refiner is not None:
        Cameras(data.K.cpu().numpy(), w2c.cpu().numpy(), W, H, "refined").save(ctx.out / "cameras")
    kp_info = write_keypoints(trainer, ctx.out / "keypoints")
    ctx.progress("rendering", 0, data.T)
    images, depth = render_all(scene, data.K, w2c, W, H, ts)
    Frames(images, frames_meta["fps"], np.asarray(frames_meta["source_index"])).save(ctx.out / "renders" / "train")
    Depth(depth).save(ctx.out / "renders" / "train")
    with torch.no_grad():
        traj_t = scene.deform_points(data.track_canonical, torch.arange(data.T, device=device)).transpose(0, 1)
        xy = project_points(traj_t, data.K[None], w2c[None])[0].cpu().numpy()
    traj = traj_t.cpu().numpy()
    visible = data.track_visible.cpu().numpy()
    Tracks(xy, visible, visible.astype(np.float32), visible.argmax(1), traj).save(ctx.out / "tracks")
    rendered, target = images / 255.0, data.images.cpu().numpy()
    fg = data.masks[..., 0].cpu().numpy() > 0.5
    train_psnr = psnr(rendered, target)
    train_psnr_fg = psnr(rendered, target, mask=fg) if fg.any() else None
    return {"final_losses": final, "train_psnr": train_psnr, "train_psnr_fg": train_psnr_fg, "resumed_at": resumed_at,
            "step_time_ms": trainer.timer.summary(), **kp_info, **meta, **device_info(device)}


def device_info(device: torch.device) -> dict[str, Any]:
    """What the optimisation ran on, for the manifest: device, GPU name, CUDA and gsplat versions."""
    info: dict[str, Any] = {"device": str(device), "torch": torch.__version__}
    if device.type == "cuda":
        from importlib.metadata import PackageNotFoundError, version

        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
        try:
            info["gsplat"] = version("gsplat")
        except PackageNotFoundError:
            info["gsplat"] = None
    return info


@torch.no_grad()
def write_keypoints(trainer: Trainer, folder: Path) -> dict[str, Any]:
    """The projected keypoint anchors at every frame as a ``Keypoints`` artifact (``xy`` at the
    training cameras, ``confidence`` 1 in front of the camera, ``xyz`` world positions);
    returns the mean pixel error to the input keypoints before and after training."""
    kp, data = trainer.data.keypoints, trainer.data
    if trainer.anchors is None or kp is None:
        return {}
    ts = torch.arange(data.T, device=trainer.device)
    xyz = trainer.anchors.positions(trainer.scene, ts)
    xy, z = project_points(xyz, data.K[:, None], trainer.cameras()[:, None])
    Keypoints(xy.cpu().numpy(), (z > 0).float().cpu().numpy(), kp.skeleton.cpu().numpy(), kp.names,
              xyz.cpu().numpy()).save(folder)
    return {"kp_input_error_px": {"init": trainer.kp_error_init, "final": trainer.keypoint_error()}}


STAGE = StageSpec(
    name="recon", version=3, upstream=("frames", "masks", "align", "tracks", "cameras", "keypoints", "lift"),
    params=ReconParams, run=run, summary="optimise Gaussians + HiMoR",
    for_device=resolve_schedule, check=check_params,
)
