"""One function per registered metric: gather its inputs, call :mod:`dynrec.metrics`, and
return a :class:`MetricResult` (value, sample count, per-frame series) or the reason it
could not be computed.

Splits: ``train`` = the input video at the training cameras (renders vs input frames,
camera trajectory, tracks); ``heldout`` = the held-out cameras, pooled over cameras (one
value per camera in ``by_camera``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console

from dynrec import metrics as M
from dynrec.artifacts import Cameras, Keypoints, Tracks
from dynrec.evaluate.inputs import EvalInputs, HeldoutView, Unavailable
from dynrec.geometry.lift import project_points
from dynrec.metrics.base import MetricNotComputable
from dynrec.metrics.frechet import FVD_CLIP_LEN
from dynrec.metrics.transfer import apck_transfer, epe_transfer, keypoint_queries, pck_transfer
from dynrec.model.tracking import query_trajectories
from dynrec.weights import BY_NAME, METRIC_WEIGHTS, WeightsNotFound, ensure

HELDOUT_NEEDS = frozenset({"gt_heldout", "covis_masks"})
GT_NEEDS = frozenset({"gt_heldout", "covis_masks", "gt_cameras", "gt_tracks_2d", "gt_tracks_3d", "gt_keypoints",
                      "gt_keypoint_pairs", "gt_keypoint_depth"})


def split_of(name: str) -> str:
    """``heldout`` for metrics on held-out cameras, ``train`` for the rest."""
    return "heldout" if HELDOUT_NEEDS & set(M.METRICS[name].needs) else "train"


@dataclass
class MetricResult:
    """One row of the report.

    ``value`` is the mean (``None`` when not computed); ``n`` the number of samples it
    averages (frames, frame pairs, clips or (point, frame) samples); ``per_frame`` maps a
    series name (``train`` or a held-out camera) to values [T] (or [T-1] for frame pairs,
    entry t for (t, t+1)); ``reference`` is the same metric on the input data where that is
    the meaningful floor (tracks, warp error); ``note`` a caveat shown with the value.
    """

    metric: str
    split: str
    computed: bool
    value: float | None = None
    n: int = 0
    reason: str = ""
    reference: float | None = None
    by_camera: dict[str, float] = field(default_factory=dict)
    note: str = ""
    per_frame: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def info(self) -> M.MetricInfo:
        return M.METRICS[self.metric]


class Models:
    """Metric networks, loaded once on first use from ``weights_dir`` / ``$DYNREC_WEIGHTS``.

    With ``fetch``, missing weights are downloaded first (:func:`dynrec.weights.ensure`); a
    file still missing raises :class:`Unavailable` with ``weights missing: <file, folders>``.
    """

    def __init__(self, weights_dir: Path | None, device: str = "cpu", fetch: bool = False,
                 console: Console | None = None):
        self.weights_dir, self.device, self.fetch, self.console = weights_dir, device, fetch, console
        self._cache: dict[str, Any] = {}

    def get(self, kind: str) -> Any:
        loaders: dict[str, Callable[[], Any]] = {
            "lpips": lambda: M.load_lpips(self.weights_dir, self.device),
            "clip": lambda: M.load_clip(weights_dir=self.weights_dir, device=self.device),
            "inception": lambda: M.load_inception(self.weights_dir, self.device),
            "i3d": lambda: M.load_i3d(self.weights_dir, self.device),
        }
        if kind not in self._cache:
            try:
                if self.fetch:
                    ensure([BY_NAME[n] for n in METRIC_WEIGHTS[f"weights:{kind}"]], self.weights_dir, self.console)
                self._cache[kind] = loaders[kind]()
            except WeightsNotFound as exc:
                self._cache[kind] = Unavailable("weights could not be downloaded: " + "; ".join(exc.failures.values()))
            except M.WeightsMissing as exc:
                self._cache[kind] = Unavailable(
                    f"weights missing: {exc.reason}; `dynrec weights fetch {' '.join(METRIC_WEIGHTS[f'weights:{kind}'])}` "
                    "downloads them (or give their folder with --weights-dir)")
            except MetricNotComputable as exc:
                self._cache[kind] = Unavailable(exc.reason)
        value = self._cache[kind]
        if isinstance(value, Unavailable):
            raise value
        return value


Compute = Callable[[str, EvalInputs, Models], MetricResult]


def _finite_mean(values: np.ndarray) -> tuple[float, int]:
    """Mean over defined (non-NaN) entries and their count; inf stays inf."""
    ok = ~np.isnan(values)
    if not ok.any():
        raise MetricNotComputable("", "undefined in every frame (empty mask or no valid points)")
    return float(values[ok].mean()), int(ok.sum())


def _reference(fn: Callable[[], Any]) -> float | None:
    """The reference value, or None where it is undefined (no valid samples)."""
    try:
        return float(fn())
    except MetricNotComputable:
        return None


def _per_frame(name: str, values: np.ndarray, series: str = "train", **kw: Any) -> MetricResult:
    value, n = _finite_mean(np.asarray(values, dtype=np.float64))
    return MetricResult(name, split_of(name), True, value, n, per_frame={series: np.asarray(values, float)}, **kw)


# ----- renders vs input frames (train split) ------------------------------------------------
def _psnr_fg(name: str, inp: EvalInputs, models: Models) -> MetricResult:
    render, _ = inp.renders()
    masks = inp.input_masks()
    return _per_frame(name, M.psnr(render, inp.images(), mask=masks.astype(np.float64), reduction="none"),
                      note="frames with an empty mask are skipped" if not masks.any(axis=(1, 2)).all() else "")


def _image_metric(fn: Callable[..., Any], model: str | None = None) -> Compute:
    def compute(name: str, inp: EvalInputs, models: Models) -> MetricResult:
        render, _ = inp.renders()
        extra = (models.get(model),) if model else ()
        return _per_frame(name, fn(render, inp.images(), *extra, reduction="none"))
    return compute


def _heldout_metric(fn: Callable[..., Any], model: str | None = None, masked: bool = True) -> Compute:
    """A metric per held-out camera, pooled: masked by co-visibility (DyCheck) or over the
    full image (``masked=False``, the Nvidia protocol)."""
    def compute(name: str, inp: EvalInputs, models: Models) -> MetricResult:
        views: list[HeldoutView] = inp.heldout()
        if masked:
            for v in views:
                if v.covis is None:
                    raise Unavailable(f"no co-visibility masks for {v.name}: {v.covis_reason}")
        extra = (models.get(model),) if model else ()
        per_frame = {v.name: np.asarray(fn(v.render, v.gt, *extra, mask=v.covis if masked else None,
                                           reduction="none"), float)
                     for v in views}
        value, n = _finite_mean(np.concatenate(list(per_frame.values())))
        by_camera = {cam: _finite_mean(vals)[0] for cam, vals in per_frame.items()
                     if not np.isnan(vals).all()}
        return MetricResult(name, "heldout", True, value, n, by_camera=by_camera, per_frame=per_frame)
    return compute


def _clip_i(name: str, inp: EvalInputs, models: Models) -> MetricResult:
    render, _ = inp.renders()
    return _per_frame(name, M.clip_i(render, inp.images(), models.get("clip"), reduction="none"))


def _clip_t(name: str, inp: EvalInputs, models: Models) -> MetricResult:
    render, _ = inp.renders()
    if not inp.prompt:
        raise Unavailable("no text prompt: pass --prompt TEXT")
    return _per_frame(name, M.clip_t(render, inp.prompt, models.get("clip"), reduction="none"))


def _tc_clip(name: str, inp: EvalInputs, models: Models) -> MetricResult:
    render, _ = inp.renders()
    clip = models.get("clip")
    ref = _reference(lambda: M.clip_temporal_consistency(inp.images(), clip))
    return _per_frame(name, M.clip_temporal_consistency(render, clip, reduction="none"), reference=ref,
                      note="reference: the input video")


def _tc_warp(name: str, inp: EvalInputs, models: Models) -> MetricResult:
    render, _ = inp.renders()
    tracks = inp.input_tracks()
    ref = _reference(lambda: M.warp_error(inp.images(), tracks.xy, tracks.visible))
    values = M.warp_error(render, tracks.xy, tracks.visible, reduction="none")
    result = _per_frame(name, values, reference=ref, note="reference: the input video")
    result.value = M.warp_error(render, tracks.xy, tracks.visible)  # pooled over samples, not frames
    x = tracks.xy
    inside = (x[..., 0] >= 0) & (x[..., 0] <= inp.size[0]) & (x[..., 1] >= 0) & (x[..., 1] <= inp.size[1])
    ok = tracks.visible & inside & np.isfinite(x).all(-1)
    result.n = int((ok[:, 1:] & ok[:, :-1]).sum())
    return result


def _fid(name: str, inp: EvalInputs, models: Models) -> MetricResult:
    render, _ = inp.renders()
    value = M.fid(render, inp.images(), models.get("inception"))
    return MetricResult(name, "train", True, value, inp.T, note="few samples: compare only at equal frame counts")


def _fvd(name: str, inp: EvalInputs, models: Models) -> MetricResult:
    render, _ = inp.renders()
    if inp.T < FVD_CLIP_LEN + 1:
        raise Unavailable(f"{inp.T} frames; FVD needs at least {FVD_CLIP_LEN + 1} (2 clips of {FVD_CLIP_LEN})")
    value = M.fvd(render, inp.images(), models.get("i3d"))
    return MetricResult(name, "train", True, value, inp.T - FVD_CLIP_LEN + 1,
                        note="few clips: compare only at equal frame counts")


# ----- camera trajectory ---------------------------------------------------------------------
#: The note of trajectory errors whose cameras are the ground truth (errors are round-off).
GT_CAMERAS_NOTE = ", copied from the ground truth by the cameras stage (0 by construction)"


def trajectory(inp: EvalInputs) -> tuple[M.TrajectoryErrors, str]:
    """ATE / RPE of the evaluated cameras against the ground truth (cached), and a note."""
    def load() -> tuple[M.TrajectoryErrors, str]:
        gt = inp.gt_cameras()
        pred, where = inp.pred_cameras()
        try:
            errors = M.trajectory_errors(pred.w2c, gt.w2c, convention="w2c")
        except MetricNotComputable as exc:
            raise Unavailable(exc.reason) from exc
        note = f"cameras: WORK/{where}"
        if pred.method == "gt":
            note += GT_CAMERAS_NOTE
        return errors, note
    return inp.memo("trajectory", load)


def _ate(name: str, inp: EvalInputs, models: Models) -> MetricResult:
    e, note = trajectory(inp)
    return MetricResult(name, "train", True, e.ate, len(e.ate_per_frame), note=note,
                        per_frame={"train": e.ate_per_frame})


def _rpe(which: str) -> Compute:
    def compute(name: str, inp: EvalInputs, models: Models) -> MetricResult:
        e, note = trajectory(inp)
        per_pair = e.rpe_trans_per_pair if which == "trans" else e.rpe_rot_per_pair
        value = e.rpe_trans if which == "trans" else e.rpe_rot
        return MetricResult(name, "train", True, value, len(per_pair), note=note, per_frame={"train": per_pair})
    return compute


# ----- tracks --------------------------------------------------------------------------------
@dataclass
class TrackPairs:
    """The model's trajectories of ground-truth points and the truth: ``pred_xy`` [N, T, 2] at
    the model's cameras, ``pred_xyz`` [N, T, 3] in the ground truth's world, ``xy``, ``xyz``,
    ``visible`` [N, T] of the ground truth; ``note`` says how they were paired."""

    pred_xy: np.ndarray
    pred_xyz: np.ndarray
    xy: np.ndarray
    xyz: np.ndarray
    visible: np.ndarray
    note: str


def _track_pairs(inp: EvalInputs) -> TrackPairs:
    """Pair the model's motion with ground-truth tracks, whatever made the inputs.

    When the ``tracks`` stage copied the ground truth, the lifted points are ground-truth
    points: their model trajectories (``recon/tracks``) are compared row for row. Otherwise
    each ground-truth query ``(t_q, x, y)`` is lifted with the model's rendered depth at
    ``t_q`` and carried by the model's motion (:func:`dynrec.model.tracking.query_trajectories`,
    Shape of Motion's protocol). 3D points are compared after the Sim(3) that aligns the
    model's cameras to the ground truth's.
    """
    def load() -> TrackPairs:
        sim, note = _model_to_gt(inp)
        try:
            gt = inp.gt_tracks()
        except Unavailable:
            gt = None
        if gt is not None:
            pred = inp.recon_tracks()
            rows = inp.lift().track_index
            pred_xy, pred_xyz = pred.xy, pred.xyz
            xy, xyz, vis = gt.xy[rows], gt.xyz[rows], gt.visible[rows]
        else:
            gt = inp.gt_tracks_raw()
            cams, _ = inp.pred_cameras()
            W, H = inp.size
            qf = gt.query_frame.astype(np.int64)
            qxy = gt.xy[np.arange(len(qf)), qf]
            masks = inp.gt_masks()  # the moving subject's points only, as the lifted rows are
            col = np.clip(qxy[:, 0].astype(np.int64), 0, W - 1)
            row = np.clip(qxy[:, 1].astype(np.int64), 0, H - 1)
            fg = masks[qf, row, col]
            if not fg.any():
                raise Unavailable("no ground-truth track starts on the ground-truth foreground")
            gt = Tracks(gt.xy[fg], gt.visible[fg], gt.confidence[fg], gt.query_frame[fg], gt.xyz[fg])
            qf, qxy = qf[fg], qxy[fg]
            xyz_t, ok = query_trajectories(inp.scene(), torch.from_numpy(cams.K).float(),
                                           torch.from_numpy(cams.w2c).float(), W, H,
                                           torch.from_numpy(qf), torch.from_numpy(qxy).float(),
                                           foreground_only=True)
            pred_xyz = xyz_t.numpy().astype(np.float64)
            pred_xy = project_points(xyz_t, torch.from_numpy(cams.K).float()[None],
                                     torch.from_numpy(cams.w2c).float()[None])[0].numpy()
            xy, xyz, vis = gt.xy, gt.xyz, gt.visible
            how = ("ground-truth queries on the foreground lifted with the model's rendered depth (of its "
                   f"foreground) and carried by its motion ({int(ok.sum())} of {len(ok)} on the model's surface)")
            note = f"{how}; {note}" if note else how
        if sim is not None:
            pred_xyz = sim.apply_points(pred_xyz.astype(np.float64))
        return TrackPairs(pred_xy, pred_xyz, xy, xyz, vis, note)
    return inp.memo("track_pairs", load)


def _pck_t(name: str, inp: EvalInputs, models: Models) -> MetricResult:
    p = _track_pairs(inp)
    values = M.pck_t(p.pred_xy, p.xy, inp.size[::-1], p.visible, reduction="none")
    result = _per_frame(name, values, note=p.note)
    result.value, result.n = M.pck_t(p.pred_xy, p.xy, inp.size[::-1], p.visible), int(p.visible.sum())
    return result


def _model_to_gt(inp: EvalInputs) -> tuple[M.Sim3 | None, str]:
    """The similarity taking the model's world to the ground truth's (None = identity).

    The model lives in the world of the ``cameras`` stage it was initialised with (as for
    the held-out renders): identical to the ground truth's when that stage copied it, else
    related by the Umeyama Sim(3) of the camera centres.
    """
    folder = inp.stage("cameras")
    cams, gt = Cameras.load(folder), inp.gt_cameras()
    if cams.method == "gt" or np.allclose(cams.w2c, gt.w2c, atol=1e-5):
        return None, ""
    try:
        sim = M.umeyama(cams.c2w[:, :3, 3], gt.c2w[:, :3, 3])
    except MetricNotComputable as exc:
        raise Unavailable(f"cannot align the model's world to the ground truth: {exc.reason}") from exc
    return sim, "model points aligned to the ground truth by the Sim(3) of WORK/cameras"


def _epe_3d(name: str, inp: EvalInputs, models: Models) -> MetricResult:
    p = _track_pairs(inp)
    result = _per_frame(name, M.epe_3d(p.pred_xyz, p.xyz, p.visible, reduction="none"), note=p.note)
    result.value, result.n = M.epe_3d(p.pred_xyz, p.xyz, p.visible), int(p.visible.sum())
    return result


def _keypoints(inp: EvalInputs) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """The model's and the ground-truth keypoints as tracks [P, T, 2] of paired joints,
    visibility [P, T] and a note on how the layouts were paired (:func:`M.match_layouts`)."""
    pred, gt = inp.recon_keypoints(), inp.gt_keypoints()
    if pred.xy.shape[0] != gt.xy.shape[0]:
        raise Unavailable(f"the reconstruction has keypoints at {pred.xy.shape[0]} frames, the ground truth at "
                          f"{gt.xy.shape[0]}")
    pxy, gxy = pred.xy.transpose(1, 0, 2), gt.xy.transpose(1, 0, 2)
    gvis = gt.confidence.T > 0
    match = M.match_layouts(pred.names, gt.names, pxy, gxy, pred.confidence.T > 0, gvis)
    if not len(match.pred):
        raise Unavailable(f"cannot pair the model's keypoints with the ground truth's joints: {match.note}")
    return pxy[match.pred], gxy[match.gt], gvis[match.gt], match.note


def _kp_err(name: str, inp: EvalInputs, models: Models) -> MetricResult:
    pred, gt, vis, note = _keypoints(inp)
    result = _per_frame(name, M.epe_2d(pred, gt, vis, reduction="none"), note=note)
    result.value, result.n = M.epe_2d(pred, gt, vis), int(vis.sum())
    return result


def _kp_pck(name: str, inp: EvalInputs, models: Models) -> MetricResult:
    pred, gt, vis, note = _keypoints(inp)
    result = _per_frame(name, M.pck_t(pred, gt, inp.size[::-1], vis, reduction="none"), note=note)
    result.value, result.n = M.pck_t(pred, gt, inp.size[::-1], vis), int(vis.sum())
    return result


@dataclass
class CarriedKeypoints:
    """Every visible ground-truth keypoint annotation carried by the model to every frame:
    ``xy`` [Q, T, 2] at the model's cameras, ``xyz`` [Q, T, 3] in the ground truth's world
    (NaN where the model had nothing at the query), the ground truth ``gt`` and a ``note``."""

    xy: np.ndarray
    xyz: np.ndarray
    gt: Keypoints
    note: str


def _carried_keypoints(inp: EvalInputs) -> CarriedKeypoints:
    """Lift each annotated keypoint (frame s, pixel) with the model's rendered depth at s and
    carry it by the model's motion (:func:`query_trajectories`, as Shape of Motion's
    ``evaluate_iphone.py`` does with its own renders); 3D after the Sim(3) of
    :func:`_model_to_gt`."""
    def load() -> CarriedKeypoints:
        gt = inp.gt_keypoints()
        vis = gt.confidence > 0
        frame, joint = keypoint_queries(vis)
        if len(frame) == 0:
            raise Unavailable("the ground-truth keypoints are visible nowhere in the kept frames")
        cams, _ = inp.pred_cameras()
        W, H = inp.size
        K, w2c = torch.from_numpy(cams.K).float(), torch.from_numpy(cams.w2c).float()
        xyz_t, ok = query_trajectories(inp.scene(), K, w2c, W, H, torch.from_numpy(frame),
                                       torch.from_numpy(gt.xy[frame, joint]).float())
        xy = project_points(xyz_t, K[None], w2c[None])[0].numpy().astype(np.float64)
        xyz = xyz_t.numpy().astype(np.float64)
        sim, align = _model_to_gt(inp)
        if sim is not None:
            xyz = sim.apply_points(xyz)
        bad = ~ok.numpy()
        xy[bad], xyz[bad] = np.nan, np.nan
        annotated = int(vis.any(axis=1).sum())
        note = (f"{len(frame)} annotations on {annotated} frames lifted with the model's rendered depth and carried "
                f"by its motion ({int(bad.sum())} with nothing rendered there)")
        return CarriedKeypoints(xy, xyz, gt, f"{note}; {align}" if align else note)
    return inp.memo("carried_keypoints", load)


def _pck_t_kp(name: str, inp: EvalInputs, models: Models) -> MetricResult:
    c = _carried_keypoints(inp)
    value, pairs = pck_transfer(c.xy, c.gt.xy, c.gt.confidence > 0, inp.size[::-1])
    return MetricResult(name, "train", True, value, pairs, note=c.note)


def _px_scale_1x(inp: EvalInputs) -> tuple[float, str]:
    """Pixels of the evaluated frames per pixel of the dataset's 1x images (Shape of Motion's
    APCK thresholds are in 1x pixels)."""
    info = inp.scene_info()
    factor = float(info.get("factor", 1) or 1)
    width = float(info.get("width", inp.size[0]) or inp.size[0])
    scale = inp.size[0] / (width * factor)
    return scale, "" if abs(scale - 1) < 1e-6 else f"thresholds scaled by {scale:g} (images at 1/{1 / scale:g} of 1x)"


def _apck_kp(name: str, inp: EvalInputs, models: Models) -> MetricResult:
    c = _carried_keypoints(inp)
    scale, how = _px_scale_1x(inp)
    value, n = apck_transfer(c.xy, c.gt.xy, c.gt.confidence > 0, scale)
    return MetricResult(name, "train", True, value, n, note="; ".join(x for x in (c.note, how) if x))


def _transfer_3d(which: str | float) -> Compute:
    def compute(name: str, inp: EvalInputs, models: Models) -> MetricResult:
        c = _carried_keypoints(inp)
        if c.gt.xyz is None:
            raise Unavailable("the ground-truth keypoints have no 3D positions")
        xyz = c.gt.xyz
        r = inp.memo("keypoint_transfer_3d",  # one pass serves epe_3d_kp, pck_3d_5cm and pck_3d_10cm
                     lambda: epe_transfer(c.xyz, c.gt.confidence > 0, xyz, inp.gt_keypoint_valid_3d()))
        value = r.epe if which == "epe" else r.within[float(which)]
        note = c.note + (f"; {r.skipped} samples without a prediction left out" if r.skipped else "")
        return MetricResult(name, "train", True, value, r.pairs, note=note)
    return compute


def _window_count(valid: np.ndarray, half: int) -> int:
    """Number of (point, t) with ``valid`` at t-half .. t+half."""
    T = valid.shape[1]
    ok = np.ones((valid.shape[0], T - 2 * half), dtype=bool)
    for k in range(2 * half + 1):
        ok &= valid[:, k:T - 2 * half + k]
    return int(ok.sum())


def _track_smoothness(fn: Callable[..., Any], half: int) -> Compute:
    def compute(name: str, inp: EvalInputs, models: Models) -> MetricResult:
        pred = inp.recon_tracks()
        tracks = inp.input_tracks()
        rows = inp.lift().track_index
        valid = np.isfinite(pred.xy).all(-1)
        ref = _reference(lambda: fn(tracks.xy[rows], tracks.visible[rows]))
        result = _per_frame(name, fn(pred.xy, valid, reduction="none"), reference=ref,
                            note="model's 2D trajectories; reference: the input tracks")
        result.value, result.n = fn(pred.xy, valid), _window_count(valid, half)
        return result
    return compute


COMPUTE: dict[str, Compute] = {
    "psnr": _image_metric(M.psnr),
    "psnr_fg": _psnr_fg,
    "ssim": _image_metric(M.ssim),
    "lpips": _image_metric(M.lpips, "lpips"),
    "mpsnr": _heldout_metric(M.psnr),
    "mssim": _heldout_metric(M.ssim),
    "mlpips": _heldout_metric(M.lpips, "lpips"),
    "nv_psnr": _heldout_metric(M.psnr, masked=False),
    "nv_ssim": _heldout_metric(M.ssim, masked=False),
    "nv_lpips": _heldout_metric(M.lpips, "lpips", masked=False),
    "pck_t_kp": _pck_t_kp,
    "apck_kp": _apck_kp,
    "epe_3d_kp": _transfer_3d("epe"),
    "pck_3d_5cm": _transfer_3d(0.05),
    "pck_3d_10cm": _transfer_3d(0.10),
    "clip_i": _clip_i,
    "clip_t": _clip_t,
    "tc_clip": _tc_clip,
    "tc_warp": _tc_warp,
    "fid": _fid,
    "fvd": _fvd,
    "ate": _ate,
    "rpe_trans": _rpe("trans"),
    "rpe_rot": _rpe("rot"),
    "pck_t": _pck_t,
    "epe_3d": _epe_3d,
    "kp_err": _kp_err,
    "kp_pck": _kp_pck,
    "jitter": _track_smoothness(M.temporal_jitter, 2),
    "smoothness": _track_smoothness(M.motion_smoothness, 1),
}


def compute_metric(name: str, inp: EvalInputs, models: Models) -> MetricResult:
    """Compute one registered metric; anything that makes it impossible becomes a
    not-computed row with the reason (errors in the inputs themselves propagate)."""
    try:
        if GT_NEEDS & set(M.METRICS[name].needs):
            inp.gt_scene()  # "no ground truth" before any other reason
        return COMPUTE[name](name, inp, models)
    except Unavailable as exc:
        return MetricResult(name, split_of(name), False, reason=exc.reason)
    except MetricNotComputable as exc:
        return MetricResult(name, split_of(name), False, reason=exc.reason)
