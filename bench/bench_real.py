"""Real footage: the offline preprocessing (and optionally the CPU reconstruction) on real clips.

``python -m bench real [--clips STEMS] [--max-frames N] [--long-side 160] [--recon]
[--parts tracking,cameras,colmap,masks] [--videos] [--work /tmp/benchreal]`` from the
repository root; writes ``bench/results/real.json`` (merged per clip and part with what an
earlier run wrote, so a later ``--recon --clips X`` adds to the figures instead of replacing
them). Skips with a message (exit 0) when ``../shared`` is absent. Torch and OpenCV run on
one thread, and so do the ``dynrec preprocess`` subprocesses (``OMP_NUM_THREADS=1``); the
reconstruction gets the machine's threads.

On ``../shared/realclips/`` (five Stereo4D clips, 512x512, pseudo ground truth from stereo:
2D tracks of the moving objects and camera centres; see its README):

* **tracking** (TAP-Vid style, query-first, frames at 256x256 read by the frames stage): the
  ground-truth tracks are queried at their first visible frame and tracked by (a) the tracks
  stage's offline tracker, :func:`dynrec.vision.lk.track_points` with the stage's default
  parameters, and (b) plain frame-to-frame pyramidal LK (``cv2.calcOpticalFlowPyrLK``,
  21x21 window, 3 levels, OpenCV's default criteria; a point whose status drops is lost and
  stays where it was). Over the ground-truth visible samples after the query frame:
  ``delta_avg`` (fraction within 1, 2, 4, 8, 16 px, averaged), ``survival`` (fraction the
  tracker reports visible), TAP-Vid's occlusion accuracy and average Jaccard, median error.
* **cameras**: ``dynrec preprocess CLIP -o W --offline --long-side 160``'s cameras against
  ``cam_pos``: camera-centre ATE (RMSE) after the Sim(3) (Umeyama) alignment of the
  registered frames, in metres and as % of the ground-truth path length, frames registered,
  and the viewing-direction error after the alignment's rotation (``cam_fwd``). **colmap**:
  plain pycolmap on the same frames (SIFT, sequential matching, incremental mapping with
  COLMAP's defaults except one thread and the shorter global bundle adjustments of
  :mod:`dynrec.geometry.colmap`), measured the same way. Two clips have a camera that barely
  moves (path of centimetres: ``camera_moves`` false); their ATE is left out of the means.
* **masks**: that work dir's masks (offline backend): recall of the visible moving-object
  track points inside the mask, per frame and averaged, and mask area over the area of the
  convex hull of those points (and over the union of one hull per object).
* **recon** (``--recon``): ``dynrec reconstruct W`` with the README's CPU schedule; training
  PSNR, peak RSS and seconds of every stage from the manifests.

``--videos``: ``../shared/videos/*.mp4`` (no ground truth): the same preprocessing,
``dynrec inspect`` contact sheets (``W/inspect/*.png``), and with ``--recon`` training PSNR
and peak memory.

Targets (issue 11, means over the clips): mask recall >= 0.9 with area <= 2.5x the hull;
offline tracker >= plain LK + 0.10 on delta_avg; ATE <= 1% of the path with every frame
registered; training PSNR >= 27 dB.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RESULTS = Path(__file__).resolve().parent / "results" / "real.json"
SHARED = Path(__file__).resolve().parents[2] / "shared"
THRESHOLDS = (1, 2, 4, 8, 16)
TRACK_SIDE = 256
TARGETS = {"delta_avg_gain": 0.10, "ate_pct_path": 1.0, "mask_recall": 0.9, "mask_area_ratio": 2.5,
           "train_psnr": 27.0}
#: the README's CPU schedule (as bench_recon.CPU_SETTINGS)
CPU_SETTINGS = ("recon.steps=600", "recon.lr_scale=5", "recon.lr_final=0.05", "recon.gaussian_densify=false")
#: a camera whose ground-truth centres stay within this box diagonal (metres) barely moves
STATIC_CAMERA_M = 0.1
PARTS = ("tracking", "cameras", "colmap", "masks")


# --------------------------------------------------------------------------- metric helpers


def tapvid_metrics(xy: np.ndarray, visible: np.ndarray, gt_xy: np.ndarray, gt_visible: np.ndarray,
                   query_frame: np.ndarray, thresholds: tuple[int, ...] = THRESHOLDS) -> dict[str, Any]:
    """TAP-Vid query-first figures of predicted tracks ``xy`` [N, T, 2] / ``visible`` [N, T].

    Evaluated on the samples after each track's ``query_frame`` [N]; positions count on every
    ground-truth visible sample whatever the predicted visibility (as TAP-Vid does).
    ``delta_avg``: fraction within each threshold, averaged; ``survival``: fraction of the
    ground-truth visible samples predicted visible; ``occlusion_accuracy``; ``average_jaccard``.
    """
    T = gt_visible.shape[1]
    after = np.arange(T)[None, :] > np.asarray(query_frame)[:, None]
    gt_vis = gt_visible & after
    pred_vis = visible & after
    err = np.linalg.norm(np.asarray(xy, np.float64) - gt_xy, axis=-1)
    n_vis = max(int(gt_vis.sum()), 1)
    within, jaccard = {}, {}
    for thr in thresholds:
        ok = err < thr
        within[thr] = float((ok & gt_vis).sum() / n_vis)
        tp = (ok & pred_vis & gt_vis).sum()
        fp = ((~gt_visible | ~ok) & pred_vis).sum()
        jaccard[thr] = float(tp / max(n_vis + fp, 1))
    return {
        "delta_avg": float(np.mean(list(within.values()))),
        "within": {str(k): round(v, 4) for k, v in within.items()},
        "survival": float((pred_vis & gt_vis).sum() / n_vis),
        "occlusion_accuracy": float((visible == gt_visible)[after].mean()) if after.any() else float("nan"),
        "average_jaccard": float(np.mean(list(jaccard.values()))),
        "median_error_px": float(np.median(err[gt_vis])) if gt_vis.any() else float("nan"),
        "samples": int(gt_vis.sum()),
    }


def camera_ate(est: np.ndarray, gt: np.ndarray, registered: np.ndarray | None = None) -> dict[str, Any]:
    """Camera-centre ATE of ``est`` [T, 3] against ``gt`` [T, 3] after Sim(3) alignment.

    Only ``registered`` [T] frames are aligned and measured (None with fewer than 3). Returns the RMSE in ground-truth
    units, as % of the ground-truth path length (over all T frames), the path length, the
    alignment scale, and the rotation ``R`` of the alignment. An estimate that does not move
    (a static camera) is aligned by translation only.
    """
    from dynrec.metrics import MetricNotComputable, umeyama

    reg = np.ones(len(gt), bool) if registered is None else np.asarray(registered, bool)
    path = float(np.linalg.norm(np.diff(gt, axis=0), axis=1).sum())
    x, y = np.asarray(est, np.float64)[reg], np.asarray(gt, np.float64)[reg]
    if len(x) < 3:  # two centres align exactly whatever they are
        return {"ate_m": None, "ate_pct_path": None, "path_m": path, "scale": None, "R": None}
    try:
        sim = umeyama(x, y)
        aligned = sim.scale * x @ sim.R.T + sim.t
        scale, R = float(sim.scale), np.asarray(sim.R)
    except MetricNotComputable:
        aligned, scale, R = np.broadcast_to(y.mean(0), y.shape), 0.0, np.eye(3)
    ate = float(np.sqrt(((aligned - y) ** 2).sum(1).mean()))
    return {"ate_m": ate, "ate_pct_path": 100 * ate / path if path > 0 else None, "path_m": path,
            "scale": scale, "R": R}


def direction_error(est: np.ndarray, gt: np.ndarray) -> float:
    """Mean angle (degrees) between unit directions ``est`` [T, 3] and ``gt`` [T, 3] after the
    rotation that best aligns them (Kabsch). Not the Sim(3) of the centres: on a straight
    camera path that rotation is free about the path's direction."""
    a = est / np.linalg.norm(est, axis=1, keepdims=True)
    b = gt / np.linalg.norm(gt, axis=1, keepdims=True)
    U, _, Vt = np.linalg.svd(b.T @ a)
    D = np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt))])
    cos = ((a @ (U @ D @ Vt).T) * b).sum(1)
    return float(np.degrees(np.arccos(np.clip(cos, -1, 1))).mean())


def mask_coverage(masks: np.ndarray, points: list[np.ndarray], objects: list[np.ndarray] | None = None,
                  min_points: int = 3) -> dict[str, Any]:
    """Recall of track points in ``masks`` [T, H, W] and mask area over the points' convex hull.

    ``points[t]`` [M, 2] pixel positions (x, y; +0.5 centres) of the visible moving-object
    points of frame t, ``objects[t]`` [M] their object ids. Frames with fewer than
    ``min_points`` points inside the image are skipped. Returns the mean over frames of the
    recall and of mask area / hull area (and / area of the union of one hull per object), the
    recall over all points pooled, and the frames counted and with an empty mask.
    """
    import cv2

    T, H, W = masks.shape
    recall, ratio, ratio_obj, hits, total, empty = [], [], [], 0, 0, 0
    for t in range(T):
        p = np.asarray(points[t], np.float64).reshape(-1, 2)
        inside = (p[:, 0] >= 0) & (p[:, 0] < W) & (p[:, 1] >= 0) & (p[:, 1] < H)
        p = p[inside]
        if len(p) < min_points:
            continue
        ix = np.floor(p).astype(np.int64)
        got = masks[t][ix[:, 1], ix[:, 0]]
        recall.append(float(got.mean()))
        hits, total = hits + int(got.sum()), total + len(got)
        empty += int(not masks[t].any())
        hull = np.zeros((H, W), np.uint8)
        cv2.fillConvexPoly(hull, cv2.convexHull(ix.astype(np.int32)), 1)
        area = float(masks[t].sum())
        ratio.append(area / max(int(hull.sum()), 1))
        if objects is not None:
            ids = np.asarray(objects[t])[inside]
            union = np.zeros((H, W), np.uint8)
            for o in np.unique(ids):
                q = ix[ids == o]
                if len(q) >= 3:
                    cv2.fillConvexPoly(union, cv2.convexHull(q.astype(np.int32)), 1)
            ratio_obj.append(area / max(int(union.sum()), 1))
    mean = (lambda v: float(np.mean(v)) if v else None)
    return {"recall": mean(recall), "area_ratio": mean(ratio), "area_ratio_object_hulls": mean(ratio_obj),
            "recall_pooled": hits / total if total else None, "frames": len(recall), "empty_mask_frames": empty}


def plain_lk(frames: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Baseline: OpenCV pyramidal LK frame to frame, forward from each query frame, with
    OpenCV's standard parameters (21x21 window, 3 levels, 30 iterations / 0.01). A point whose
    status drops, or that leaves the image, is lost for good and keeps its last position."""
    import cv2

    gray = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames])
    T, H, W = gray.shape
    N = len(queries)
    q = queries[:, 0].astype(int)
    xy = np.zeros((N, T, 2), np.float32)
    vis = np.zeros((N, T), bool)
    xy[np.arange(N), q] = queries[:, 1:] - 0.5  # OpenCV pixel centres are at integers
    vis[np.arange(N), q] = True
    alive = np.zeros(N, bool)
    lk = {"winSize": (21, 21), "maxLevel": 3,
          "criteria": (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 30, 0.01)}
    for t in range(1, T):
        alive |= q == t - 1
        started = q <= t - 1
        xy[started & ~alive, t] = xy[started & ~alive, t - 1]
        idx = np.flatnonzero(alive)
        if len(idx) == 0:
            continue
        p1, st, _ = cv2.calcOpticalFlowPyrLK(gray[t - 1], gray[t], xy[idx, t - 1].reshape(-1, 1, 2), None, **lk)
        p1 = p1[:, 0]
        ok = (st[:, 0] == 1) & (p1[:, 0] >= -0.5) & (p1[:, 0] < W - 0.5) & (p1[:, 1] >= -0.5) & (p1[:, 1] < H - 0.5)
        xy[idx, t] = np.where(ok[:, None], p1, xy[idx, t - 1])
        vis[idx[ok], t] = True
        alive[idx[~ok]] = False
    return xy + 0.5, vis


# --------------------------------------------------------------------------- running dynrec


def _env(threads: int | None) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    else:
        env.pop("OMP_NUM_THREADS", None)
        env.pop("MKL_NUM_THREADS", None)
    return env


def dynrec(*args: Any, threads: int | None = 1) -> float:
    """Run ``python -m dynrec ARGS`` (a subprocess: its stages' manifests hold their peak RSS);
    returns the wall seconds. Raises with the end of its stderr when it fails."""
    cmd = [sys.executable, "-m", "dynrec", *map(str, args)]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=_env(threads), check=False)
    if done.returncode not in (0, 2):
        raise RuntimeError(f"{' '.join(cmd[2:])} failed ({done.returncode}): {done.stderr[-1500:]}")
    return time.perf_counter() - t0


def manifests(work: Path) -> dict[str, dict[str, Any]]:
    return {d.name: json.loads((d / "manifest.json").read_text()) for d in sorted(work.iterdir())
            if (d / "manifest.json").is_file()}


def stage_figures(work: Path) -> dict[str, Any]:
    """Seconds and peak RSS (MB) of every done stage, from the manifests."""
    ms = manifests(work)
    return {"seconds": {k: m.get("duration_s") for k, m in ms.items()},
            "peak_rss_mb": {k: (m.get("memory") or {}).get("peak_rss_mb") for k, m in ms.items()}}


def preprocess(video: Path, work: Path, long_side: int, max_frames: int | None) -> dict[str, Any]:
    """``dynrec preprocess VIDEO -o WORK --offline --long-side N`` (resumes a done work dir).
    A failed stage is recorded (``failed``); the stages done before it can still be measured."""
    args = ["preprocess", video, "-o", work, "--offline", "--long-side", long_side]
    if max_frames:
        args += ["--max-frames", max_frames]
    out: dict[str, Any] = {"command": "dynrec " + " ".join(map(str, args[:1] + [video.name] + args[2:3] + ["W"]
                                                              + args[4:]))}
    t0 = time.perf_counter()
    try:
        dynrec(*args)
    except RuntimeError as err:
        out["failed"] = _last_error(str(err))
    out["wall_s"] = round(time.perf_counter() - t0, 1)
    if not work.is_dir():
        return out
    ms = manifests(work)
    info = {k: ms[k]["info"] for k in ("tracks", "masks", "cameras") if k in ms}
    out.update(stage_figures(work))
    if "tracks" in info:
        out["tracks"] = {k: info["tracks"].get(k) for k in ("tracks", "moving_tracks", "visible_fraction")}
    if "masks" in info:
        out["masks"] = {k: info["masks"].get(k) for k in ("subject", "moving_tracks", "foreground_fraction",
                                                          "empty_frames") if k in info["masks"]}
    if "cameras" in info:
        out["cameras_method"] = info["cameras"].get("method")
    return out


def _last_error(text: str) -> str:
    """The ``error: ...`` line of a failed dynrec command, else its last non-empty line."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error:")]
    return (errors or lines or ["failed"])[-1]


def reconstruct(work: Path, threads: int | None = None) -> dict[str, Any]:
    sets = [a for s in CPU_SETTINGS for a in ("--set", s)]
    wall = dynrec("reconstruct", work, *sets, threads=threads)
    m = manifests(work)["recon"]
    figs = stage_figures(work)
    return {"command": "dynrec reconstruct W " + " ".join(sets), "wall_s": round(wall, 1),
            "train_psnr": m["info"].get("train_psnr"), "peak_rss_mb": (m.get("memory") or {}).get("peak_rss_mb"),
            "seconds_per_stage": figs["seconds"], "peak_rss_mb_per_stage": figs["peak_rss_mb"],
            "final_losses": m["info"].get("final_losses")}


# --------------------------------------------------------------------------- parts


def load_truth(clip: Path) -> dict[str, np.ndarray]:
    d = np.load(clip.with_suffix(".npz"))
    return {"xy": d["tracks2d"].astype(np.float64).transpose(1, 0, 2), "visible": d["vis2d"].T.copy(),
            "cam_pos": d["cam_pos"].astype(np.float64), "cam_fwd": d["cam_fwd"].astype(np.float64),
            "objects": d["object_ids"], "dim": np.asarray(d.get("dim", (512, 512)))}


def part_tracking(clip: Path, truth: dict[str, np.ndarray], max_frames: int | None) -> dict[str, Any]:
    from dataclasses import replace

    from dynrec.stages.frames import FramesParams, read_frames
    from dynrec.stages.tracks import TracksParams
    from dynrec.vision.lk import TrackParams, track_points

    frames = read_frames(clip, FramesParams(long_side=TRACK_SIDE, max_frames=max_frames)).images
    T, H, W = frames.shape[:3]
    scale = np.array([W, H], np.float64) / truth["dim"]
    gt_xy = truth["xy"][:, :T] * scale
    gt_vis = truth["visible"][:, :T]
    keep = gt_vis.any(1)
    gt_xy, gt_vis = gt_xy[keep], gt_vis[keep]
    q = np.argmax(gt_vis, axis=1)
    N = len(q)
    queries = np.c_[q, gt_xy[np.arange(N), q]]
    # the tracks stage's parameters of the offline tracker (dynrec/stages/tracks.py, _seeded)
    sp = TracksParams()
    tp = TrackParams()
    tp = replace(tp, patch=replace(tp.patch, radius=sp.patch_radius), fb_chain=sp.fb_px, max_residual=sp.max_residual)
    t0 = time.perf_counter()
    ours = track_points(frames, queries, tp)
    secs = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref_xy, ref_vis = plain_lk(frames, queries)
    ref_secs = time.perf_counter() - t0
    off = tapvid_metrics(ours.xy, ours.visible, gt_xy, gt_vis, q)
    lk = tapvid_metrics(ref_xy, ref_vis, gt_xy, gt_vis, q)
    off["seconds"], lk["seconds"] = round(secs, 1), round(ref_secs, 1)
    return {"frames": T, "size": [W, H], "queries": N, "offline": off, "plain_lk": lk,
            "delta_avg_gain": off["delta_avg"] - lk["delta_avg"]}


def _source_index(work: Path) -> np.ndarray:
    from dynrec.artifacts import Frames

    return np.asarray(Frames.load_meta(work / "frames")["source_index"], np.int64)


def _camera_row(c2w: np.ndarray, registered: np.ndarray, truth: dict[str, np.ndarray], index: np.ndarray,
                seconds: float | None) -> dict[str, Any]:
    gt = truth["cam_pos"][index]
    res = camera_ate(c2w[:, :3, 3], gt, registered)
    res.pop("R")
    fwd_err = None
    if registered.sum() >= 2:  # OpenCV cameras look along +z
        fwd_err = direction_error(c2w[registered, :3, 2], truth["cam_fwd"][index][registered])
    extent = float(np.linalg.norm(np.ptp(truth["cam_pos"][index], axis=0)))
    return {**res, "registered": int(registered.sum()), "frames": len(index),
            "all_registered": bool(registered.all()), "fwd_err_deg": fwd_err, "gt_extent_m": extent,
            "camera_moves": extent >= STATIC_CAMERA_M, "seconds": seconds}


def part_cameras(work: Path, truth: dict[str, np.ndarray]) -> dict[str, Any]:
    from dynrec.artifacts import Cameras

    cams = Cameras.load(work / "cameras")
    m = manifests(work)["cameras"]
    info = m["info"]
    index = _source_index(work)
    registered = np.ones(len(index), bool)
    registered[list(info.get("unposed_frames") or [])] = False
    row = _camera_row(cams.c2w, registered, truth, index, m.get("duration_s"))
    row.update(method=info.get("method"), registered_sfm=info.get("registered_sfm"),
               reproj_error_px=info.get("reproj_error_px"))
    return row


def plain_colmap(frames: np.ndarray, tmp: Path, seed: int = 0) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """pycolmap's own pipeline on ``frames`` [T, H, W, 3]: SIFT, sequential matching,
    incremental mapping (largest model). Returns c2w [T, 4, 4], registered [T], info."""
    import pycolmap
    from PIL import Image

    T = len(frames)
    images = tmp / "images"
    images.mkdir(parents=True)
    names = [f"{t:06d}.png" for t in range(T)]
    for name, f in zip(names, frames, strict=True):
        Image.fromarray(f).save(images / name)
    db = tmp / "database.db"
    level = pycolmap.logging.minloglevel
    pycolmap.logging.minloglevel = 2
    try:
        extract = pycolmap.FeatureExtractionOptions()
        extract.num_threads = 1
        pycolmap.extract_features(db, images, names, pycolmap.CameraMode.SINGLE, extraction_options=extract,
                                  device=pycolmap.Device.cpu)
        match = pycolmap.FeatureMatchingOptions()
        match.num_threads = 1
        pycolmap.match_sequential(db, match, device=pycolmap.Device.cpu)
        from dynrec.geometry.colmap import mapping_options

        mapping = mapping_options(pycolmap, threads=1, seed=seed)
        models = pycolmap.incremental_mapping(db, images, tmp / "sparse", mapping)
    finally:
        pycolmap.logging.minloglevel = level
    c2w = np.tile(np.eye(4), (T, 1, 1))
    registered = np.zeros(T, bool)
    info: dict[str, Any] = {"models": len(models)}
    if models:
        rec = max(models.values(), key=lambda r: r.num_reg_images())
        for img in rec.images.values():
            if img.has_pose:
                t = names.index(img.name)
                w2c = np.eye(4)
                w2c[:3] = img.cam_from_world().matrix()
                c2w[t] = np.linalg.inv(w2c)
                registered[t] = True
        info.update(points=rec.num_points3D(), reproj_error_px=float(rec.compute_mean_reprojection_error()),
                    focal=float(next(iter(rec.cameras.values())).mean_focal_length()))
    return c2w, registered, info


def part_colmap(work: Path, truth: dict[str, np.ndarray]) -> dict[str, Any]:
    from dynrec.artifacts import Frames

    frames = Frames.load(work / "frames").images
    with tempfile.TemporaryDirectory(prefix="bench-real-colmap-") as tmp:
        t0 = time.perf_counter()
        c2w, registered, info = plain_colmap(frames, Path(tmp))
        secs = round(time.perf_counter() - t0, 1)
    row = _camera_row(c2w, registered, truth, _source_index(work), secs)
    row.update(info)
    return row


def part_masks(work: Path, truth: dict[str, np.ndarray]) -> dict[str, Any]:
    from dynrec.artifacts import Masks

    masks = Masks.load(work / "masks").masks
    H, W = masks.shape[1:]
    index = _source_index(work)
    scale = np.array([W, H], np.float64) / truth["dim"]
    pts = [truth["xy"][truth["visible"][:, s], s] * scale for s in index]
    objs = [truth["objects"][truth["visible"][:, s]] for s in index]
    row = mask_coverage(masks, pts, objs)
    row["foreground_fraction"] = float(masks.mean())
    return row


# --------------------------------------------------------------------------- driver


def _fmt(v: Any, f: str = ".3f") -> str:
    return "n/a" if v is None else format(v, f)


def summarise(clips: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Means over the clips of the headline figures, and which targets hold."""
    def mean(vals: list[Any]) -> float | None:
        vals = [v for v in vals if v is not None]
        return round(float(np.mean(vals)), 4) if vals else None

    rows = list(clips.values())
    failed = {f"{k}/{p}": v[p]["failed"] for k, v in clips.items() for p in (*PARTS, "preprocess", "recon")
              if isinstance(v.get(p), dict) and "failed" in v[p]}
    def done(part: str) -> list[dict[str, Any]]:
        return [r[part] for r in rows if part in r and "failed" not in r[part] and "skipped" not in r[part]]

    tr = done("tracking")
    out: dict[str, Any] = {"clips": len(rows)}
    if tr:
        out["tracking"] = {k: mean([r[a][m] for r in tr]) for k, a, m in (
            ("offline_delta_avg", "offline", "delta_avg"), ("plain_lk_delta_avg", "plain_lk", "delta_avg"),
            ("offline_survival", "offline", "survival"), ("plain_lk_survival", "plain_lk", "survival"),
            ("offline_average_jaccard", "offline", "average_jaccard"),
            ("plain_lk_average_jaccard", "plain_lk", "average_jaccard"))}
        out["tracking"]["delta_avg_gain"] = mean([r["delta_avg_gain"] for r in tr])
        out["tracking"]["clips"] = len(tr)
    for part in ("cameras", "colmap"):
        cs = done(part)
        if cs:
            # ATE over the registered frames means something only where most frames are
            moving = [c for c in cs if c["camera_moves"] and c["registered"] >= 0.5 * c["frames"]]
            out[part] = {"ate_pct_path_moving_cameras": mean([c["ate_pct_path"] for c in moving]),
                         "ate_m_all": mean([c["ate_m"] for c in cs]),
                         "fwd_err_deg": mean([c["fwd_err_deg"] for c in cs]),
                         "all_registered": all(c["all_registered"] for c in cs),
                         "registered_fraction": mean([c["registered"] / c["frames"] for c in cs]),
                         "clips": len(cs), "clips_in_ate_mean": len(moving),
                         "ate_mean_over": "clips whose camera moves, with at least half their frames registered"}
    ms = done("masks")
    if ms:
        out["masks"] = {k: mean([m[k] for m in ms]) for k in ("recall", "area_ratio", "area_ratio_object_hulls",
                                                               "recall_pooled")}
        out["masks"]["clips"] = len(ms)
    rc = done("recon")
    if rc:
        out["recon"] = {"train_psnr": mean([r["train_psnr"] for r in rc]),
                        "peak_rss_mb": max((r["peak_rss_mb"] or 0) for r in rc), "clips": len(rc)}
    met: dict[str, bool] = {}
    if "tracking" in out:
        met["delta_avg_gain"] = (out["tracking"]["delta_avg_gain"] or 0) >= TARGETS["delta_avg_gain"]
    if "cameras" in out:
        ate = out["cameras"]["ate_pct_path_moving_cameras"]
        met["ate_pct_path"] = ate is not None and ate <= TARGETS["ate_pct_path"] and out["cameras"]["all_registered"]
    if "masks" in out:
        met["mask_recall"] = (out["masks"]["recall"] or 0) >= TARGETS["mask_recall"]
        met["mask_area_ratio"] = (out["masks"]["area_ratio"] or 1e9) <= TARGETS["mask_area_ratio"]
    if "recon" in out:
        met["train_psnr"] = (out["recon"]["train_psnr"] or 0) >= TARGETS["train_psnr"]
    out["targets_met"] = met
    if failed:
        out["failed"] = failed
    return out


def machine() -> dict[str, Any]:
    import cv2
    import torch

    try:
        import pycolmap

        colmap = pycolmap.__version__
    except ImportError:
        colmap = None
    return {"cores": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "opencv": cv2.__version__,
            "opencv_threads": cv2.getNumThreads(), "pycolmap": colmap,
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}


def peak_memory() -> dict[str, float]:
    return {"bench_process_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "largest_subprocess_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)}


def _measure(row: dict[str, Any], name: str, fn: Any, *fargs: Any, **extra: Any) -> bool:
    """``row[name] = {**fn(*fargs), **extra}``; a failure is recorded as ``{"failed": ...}``."""
    try:
        row[name] = {**fn(*fargs), **extra}
        return True
    except Exception as err:  # noqa: BLE001 - a failure is a figure too
        row[name] = {"failed": _last_error(f"{type(err).__name__}: {err}"), **extra}
        print(f"  {name} failed: {row[name]['failed']}", flush=True)
        return False


#: the parts measured on the preprocessed work dir: part -> (measure(work, truth), summary line)
WORK_PARTS: dict[str, tuple[Callable[..., dict[str, Any]], Callable[[dict[str, Any]], str]]] = {
    "cameras": (part_cameras, lambda c: f"cameras ({c['method']}): ATE {_fmt(c['ate_pct_path'], '.2f')}% of path "
                f"({_fmt(c['ate_m'], '.4f')} m), {c['registered']}/{c['frames']} registered"),
    "colmap": (part_colmap, lambda c: f"plain pycolmap: ATE {_fmt(c['ate_pct_path'], '.2f')}% of path, "
               f"{c['registered']}/{c['frames']} registered ({c['seconds']} s)"),
    "masks": (part_masks, lambda m: f"masks: recall {_fmt(m['recall'])} area/hull {_fmt(m['area_ratio'], '.2f')} "
              f"(per-object hulls {_fmt(m['area_ratio_object_hulls'], '.2f')})"),
}


def run_clip(clip: Path, work: Path, parts: list[str], args: argparse.Namespace,
             row: dict[str, Any]) -> Iterator[None]:
    """Measure ``parts`` of one clip into ``row``; yields after each part (the caller writes the JSON)."""
    truth = load_truth(clip)
    settings = {"long_side": args.long_side, "max_frames": args.max_frames}
    if "tracking" in parts:
        if _measure(row, "tracking", part_tracking, clip, truth, args.max_frames, max_frames=args.max_frames):
            t = row["tracking"]
            print(f"{clip.stem} tracking: offline delta_avg {t['offline']['delta_avg']:.3f} survival "
                  f"{t['offline']['survival']:.3f} | plain LK {t['plain_lk']['delta_avg']:.3f} / "
                  f"{t['plain_lk']['survival']:.3f} ({t['offline']['seconds']} s / {t['plain_lk']['seconds']} s)",
                  flush=True)
        yield
    if any(p in parts for p in ("cameras", "colmap", "masks")) or args.recon:
        row["preprocess"] = {**preprocess(clip, work, args.long_side, args.max_frames), **settings}
        print(f"{clip.stem} preprocess: {row['preprocess'].get('seconds')} {row['preprocess'].get('failed', '')}",
              flush=True)
    for part, (measure, line) in WORK_PARTS.items():
        if part in parts:
            if _measure(row, part, measure, work, truth, **settings):
                print(f"{clip.stem} {line(row[part])}", flush=True)
            yield
    if args.inspect or args.recon:
        _inspect(work, row)
    if args.recon:
        _recon(work, row, args, clip.name, **settings)
    yield


def _inspect(work: Path, row: dict[str, Any]) -> None:
    try:
        dynrec("inspect", work)
    except RuntimeError as err:
        row["inspect_failed"] = _last_error(str(err))
    row["inspect"] = sorted(str(p) for p in (work / "inspect").glob("*.png"))


def _recon(work: Path, row: dict[str, Any], args: argparse.Namespace, name: str, **extra: Any) -> None:
    if "failed" in row.get("preprocess", {}):
        row["recon"] = {"skipped": f"preprocess failed: {row['preprocess']['failed']}", **extra}
        return
    if _measure(row, "recon", reconstruct, work, args.recon_threads, **extra):
        print(f"{name} recon: train PSNR {_fmt(row['recon']['train_psnr'], '.2f')} dB, peak "
              f"{row['recon']['peak_rss_mb']} MB, {row['recon']['wall_s']} s", flush=True)


def run_video(video: Path, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    row: dict[str, Any] = {"preprocess": {**preprocess(video, work, args.long_side, args.max_frames),
                                          "long_side": args.long_side, "max_frames": args.max_frames}}
    _inspect(work, row)
    print(f"{video.name}: masks {row['preprocess'].get('masks')} {row['preprocess'].get('failed', '')}; "
          f"sheets {row['inspect']}", flush=True)
    if args.recon:
        _recon(work, row, args, video.name)
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench real", description=__doc__.splitlines()[0])
    ap.add_argument("--clips", default="", help="comma-separated clip stems (or prefixes); default all")
    ap.add_argument("--parts", default=",".join(PARTS), help=f"any of {','.join(PARTS)} (empty for none)")
    ap.add_argument("--max-frames", type=int, default=None)
    ap.add_argument("--long-side", type=int, default=160)
    ap.add_argument("--recon", action="store_true", help="also reconstruct (CPU schedule; minutes per clip)")
    ap.add_argument("--recon-threads", type=int, default=None,
                    help="OMP_NUM_THREADS of the reconstruction (default: the machine's)")
    ap.add_argument("--inspect", action="store_true", help="write dynrec inspect sheets for the clips too")
    ap.add_argument("--videos", action="store_true", help="../shared/videos/*.mp4 instead of the real clips")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "benchreal",
                    help="work dirs (kept; a second run resumes them)")
    ap.add_argument("--shared", type=Path, default=SHARED)
    ap.add_argument("--output", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    if not args.shared.is_dir():
        print(f"bench real: {args.shared} is absent; nothing to measure (skipped)")
        return 0
    import cv2
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    parts = [p for p in args.parts.split(",") if p]
    unknown = set(parts) - set(PARTS)
    if unknown:
        ap.error(f"unknown parts {sorted(unknown)}; known: {', '.join(PARTS)}")
    result: dict[str, Any] = json.loads(args.output.read_text()) if args.output.is_file() else {}
    result.update(benchmark="real", targets=TARGETS, cpu_settings=list(CPU_SETTINGS))
    args.work.mkdir(parents=True, exist_ok=True)

    def write() -> None:
        result["machine"] = {**machine(), "recon_threads": args.recon_threads or f"the machine's ({os.cpu_count()})"}
        result["peak_memory"] = peak_memory()
        if result.get("clips"):
            result["mean"] = summarise(result["clips"])
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(result, indent=2, default=float) + "\n")

    if args.videos:
        folder = args.shared / "videos"
        videos = sorted(folder.glob("*.mp4"))
        if not videos:
            print(f"bench real: no videos in {folder} (skipped)")
            return 0
        result.setdefault("videos", {})
        for v in videos:
            result["videos"][v.stem] = run_video(v, args.work / f"video_{v.stem}_{args.long_side}", args)
            write()
        return 0
    folder = args.shared / "realclips"
    clips = sorted(folder.glob("*.mp4"))
    wanted = [c for c in args.clips.split(",") if c]
    if wanted:
        clips = [c for c in clips if any(c.stem.startswith(w) for w in wanted)]
    if not clips:
        print(f"bench real: no clips in {folder} match {args.clips or '*'} (skipped)")
        return 0
    result.setdefault("clips", {})
    for clip in clips:
        row = result["clips"].setdefault(clip.stem, {})
        suffix = f"_{args.max_frames}f" if args.max_frames else ""
        work = args.work / f"{clip.stem}_{args.long_side}{suffix}"
        for _ in run_clip(clip, work, parts, args, row):
            write()
        write()
    m = result.get("mean", {})
    print(json.dumps({k: m[k] for k in m if k != "clips"}, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
