"""Incremental SfM with pycolmap on our own 2D tracks (an optional dependency).

Instead of SIFT features, every visible observation of a (background) track is a COLMAP
keypoint of its frame, and two frames are matched on the tracks they share; COLMAP then
verifies the matches geometrically and runs its incremental mapper with one shared
``SIMPLE_PINHOLE`` camera (focal prior, principal point fixed at the image centre, no
distortion: downstream stages use pinhole ``K``). Because keypoints are track samples, a
COLMAP 3D point maps back to the track it came from.

COLMAP's image coordinates put pixel centres at +0.5, as this project does, so track
coordinates are passed through unchanged. ``cam_from_world`` is our ``w2c``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

_LOG_DIR: list[Path] = []  # the innermost :func:`logs_in` folder


@contextmanager
def logs_in(folder: Path | None) -> Iterator[None]:
    """COLMAP's own log lines (glog: warnings and errors such as "Failed to create any sparse
    model") go to ``folder/colmap.<time>.<pid>`` instead of the terminal while inside."""
    if folder is None:
        yield
        return
    _LOG_DIR.append(Path(folder))
    try:
        yield
    finally:
        _LOG_DIR.pop()


@contextmanager
def _glog(pycolmap: Any) -> Iterator[None]:
    log = pycolmap.logging
    saved = (log.minloglevel, log.stderrthreshold, log.alsologtostderr, log.logtostderr)
    log.minloglevel = 2  # errors only: COLMAP logs every step at INFO
    if _LOG_DIR:
        _LOG_DIR[-1].mkdir(parents=True, exist_ok=True)
        log.minloglevel = 1
        log.stderrthreshold, log.alsologtostderr, log.logtostderr = 3, False, False  # the terminal: fatal only
        log.set_log_destination(log.INFO, str(_LOG_DIR[-1] / "colmap."))
    try:
        yield
    finally:
        if _LOG_DIR:
            log.set_log_destination(log.INFO, "")  # glog: "" stops writing that file
        log.minloglevel, log.stderrthreshold, log.alsologtostderr, log.logtostderr = saved


def available() -> bool:
    """Whether pycolmap can be imported."""
    try:
        import pycolmap  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass
class ColmapResult:
    """``registered`` [T] frames with a pose; ``w2c`` [T, 4, 4] (identity where not
    registered); ``focal`` of the shared camera in pixels; ``points`` [N, 3] world point of
    each input track (NaN where COLMAP triangulated none); ``observed`` [N, T] the samples
    COLMAP kept as observations of its points; ``reproj_error`` mean in pixels; ``pairs``
    image pairs matched."""

    registered: np.ndarray
    w2c: np.ndarray
    focal: float
    points: np.ndarray
    observed: np.ndarray
    reproj_error: float
    pairs: int


#: Frame offsets matched: dense near, sparse far (COLMAP chains matches into long tracks).
OFFSETS = (1, 2, 3, 5, 8, 13, 21, 34, 55)


def pair_list(visible: np.ndarray, min_matches: int, offsets: tuple[int, ...] = OFFSETS) -> list[tuple[int, int]]:
    """Frame pairs (i, i + d) for d in ``offsets`` that share at least ``min_matches`` tracks."""
    T = visible.shape[1]
    v = visible.astype(np.int32)
    common = v.T @ v  # [T, T]
    return [(i, i + d) for i in range(T) for d in offsets if i + d < T and common[i, i + d] >= min_matches]


def run_colmap(xy: np.ndarray, visible: np.ndarray, width: int, height: int, focal_prior: float, *,
               min_matches: int = 15, init_min_tri_angle: float = 8.0,
               refine_focal: bool = True, seed: int = 0, threads: int = 1,
               workdir: Path | None = None, options: dict | None = None) -> ColmapResult:
    """Run pycolmap's incremental mapper on tracks ``xy`` [N, T, 2] with ``visible`` [N, T].

    Only the observations marked visible are used (pass background ones only). ``options``
    overrides attributes of pycolmap's ``IncrementalPipelineOptions`` (dotted names for
    nested ones, e.g. ``"mapper.init_min_tri_angle"``). Raises
    ``ImportError`` without pycolmap; returns a result with no registered frame when the
    mapper builds no model.
    """
    import pycolmap

    with _glog(pycolmap):
        return _run(pycolmap, xy, visible, width, height, focal_prior, min_matches=min_matches,
                    init_min_tri_angle=init_min_tri_angle, refine_focal=refine_focal, seed=seed,
                    threads=threads, workdir=workdir, options=options or {})


def mapping_options(pycolmap: Any, threads: int, seed: int) -> Any:
    """pycolmap ``IncrementalPipelineOptions`` for short videos: one model, no colours, and
    fewer, shorter global bundle adjustments (COLMAP's defaults, run to convergence after
    every 10% growth with 5 refinements, take minutes on 100 frames with one core)."""
    mapping = pycolmap.IncrementalPipelineOptions()
    mapping.num_threads = threads
    mapping.random_seed = seed
    mapping.extract_colors = False
    mapping.multiple_models = False
    mapping.ba_global_frames_ratio = 1.4
    mapping.ba_global_points_ratio = 1.4
    mapping.ba_global_max_refinements = 2
    mapping.ba_global_function_tolerance = 1e-5
    mapping.ba_global_max_num_iterations = 30
    mapping.ba_local_function_tolerance = 1e-5
    return mapping


def _run(pycolmap, xy, visible, width, height, focal_prior, *, min_matches, init_min_tri_angle,
         refine_focal, seed, threads, workdir, options) -> ColmapResult:
    from PIL import Image

    N, T = visible.shape
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        root = Path(tmp)
        images = root / "images"
        images.mkdir()
        names = [f"{t:06d}.png" for t in range(T)]
        blank = Image.fromarray(np.zeros((height, width), np.uint8))
        for name in names:  # COLMAP reads only the size: blank images suffice
            blank.save(images / name)
        db_path = root / "database.db"
        pycolmap.Database.open(db_path).close()  # create an empty database
        reader = pycolmap.ImageReaderOptions(camera_model="SIMPLE_PINHOLE",
                                             camera_params=f"{focal_prior},{width / 2},{height / 2}")
        pycolmap.import_images(db_path, images, pycolmap.CameraMode.SINGLE, names, reader)

        per_frame = [np.flatnonzero(visible[:, t]) for t in range(T)]  # track of each keypoint
        slot = np.full((N, T), -1, np.int64)  # keypoint index of track n in frame t
        for t, idx in enumerate(per_frame):
            slot[idx, t] = np.arange(len(idx))
        pairs = pair_list(visible, min_matches)
        db = pycolmap.Database.open(db_path)
        try:
            ids = {img.name: img.image_id for img in db.read_all_images()}
            image_id = [ids[name] for name in names]
            for t, idx in enumerate(per_frame):
                db.write_keypoints(image_id[t], np.ascontiguousarray(xy[idx, t], dtype=np.float32).reshape(-1, 2))
            for i, j in pairs:
                both = visible[:, i] & visible[:, j]
                matches = np.stack([slot[both, i], slot[both, j]], 1).astype(np.uint32)
                db.write_matches(image_id[i], image_id[j], matches)
        finally:
            db.close()
        pairs_txt = root / "pairs.txt"
        pairs_txt.write_text("".join(f"{names[i]} {names[j]}\n" for i, j in pairs))
        verify = pycolmap.TwoViewGeometryOptions()
        verify.min_num_inliers = min_matches
        verify.ransac.random_seed = seed
        verify.ransac.num_threads = threads
        verify.ransac.min_num_trials = 30
        verify.detect_watermark = False
        pycolmap.verify_matches(db_path, pairs_txt, verify)

        mapping = mapping_options(pycolmap, threads, seed)
        mapping.min_model_size = 3
        mapping.min_num_matches = min_matches
        mapping.ba_refine_focal_length = refine_focal
        mapping.ba_refine_extra_params = False
        mapping.ba_refine_principal_point = False
        mapping.mapper.init_min_tri_angle = init_min_tri_angle
        mapping.mapper.num_threads = threads
        mapping.mapper.random_seed = seed
        mapping.triangulation.random_seed = seed
        for name, value in options.items():
            *path, attr = name.split(".")
            target = mapping
            for part in path:
                target = getattr(target, part)
            setattr(target, attr, value)
        models = pycolmap.incremental_mapping(db_path, images, root / "sparse", mapping)

    registered = np.zeros(T, bool)
    w2c = np.tile(np.eye(4), (T, 1, 1))
    points = np.full((N, 3), np.nan)
    observed = np.zeros((N, T), bool)
    if not models:
        return ColmapResult(registered, w2c, float(focal_prior), points, observed, float("nan"), len(pairs))
    rec = max(models.values(), key=lambda r: r.num_reg_images())
    frame_of = {image_id[t]: t for t in range(T)}
    votes: dict[int, dict[int, list[int]]] = {}  # track -> COLMAP point -> frames
    for img_id, img in rec.images.items():
        if not img.has_pose:
            continue
        t = frame_of[img_id]
        registered[t] = True
        w2c[t, :3, :] = img.cam_from_world().matrix()
        for k, p2d in enumerate(img.points2D):
            if p2d.has_point3D():
                votes.setdefault(int(per_frame[t][k]), {}).setdefault(int(p2d.point3D_id), []).append(t)
    for n, by_point in votes.items():  # a track split into several points keeps its largest
        pid, ts = max(by_point.items(), key=lambda item: len(item[1]))
        points[n] = rec.points3D[pid].xyz
        observed[n, ts] = True
    camera = next(iter(rec.cameras.values()))
    return ColmapResult(registered, w2c, float(camera.mean_focal_length()), points, observed,
                        float(rec.compute_mean_reprojection_error()), len(pairs))
