"""``dynrec render WORK``: novel-view videos and images of a reconstruction.

A render is a camera path (:mod:`dynrec.render.paths`) paired with frame times: ``N``
cameras and ``M`` times give ``max(N, M)`` images when one of them is 1 or both are equal
(camera ``i`` at time ``i``). The training and held-out paths follow the video: at several
times camera ``t`` shows time ``t``; at one time (bullet time) every camera shows it. A
static camera (a training camera) at every time is a time-lapse. Orbits, spirals and
dollies have one camera per time, or ``frames`` cameras at one time.

Each render goes into ``WORK/renders/<name>/`` (built in a temporary folder, then swapped in):
``rgb/``, ``depth/`` (colour-mapped), ``alpha/`` PNGs and ``rgb.mp4``, ``depth.mp4``;
``depth.npy`` [F, H, W] float32 z-depth (0 where nothing was drawn) and ``alpha.npy``
[F, H, W]; ``overlay/`` + ``overlay.mp4`` with 3D tracks and the keypoint skeleton drawn
when asked; ``cameras.json`` (the path in the ``transforms.json`` format, with times), which
``--path`` reads back.
"""

from __future__ import annotations

import colorsys
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import cv2
import numpy as np
import torch

from dynrec.artifacts.base import replacing_folder
from dynrec.artifacts.types import write_pngs
from dynrec.choices import parse_choices
from dynrec.errors import DynrecError
from dynrec.evaluate.video import colorize_depth, pad_even, write_video
from dynrec.export.cameras import transforms_json, write_transforms
from dynrec.geometry.camera import project, w2c_in_other_world
from dynrec.model.scene import Sequence, render_sequence
from dynrec.pipeline.result import Reconstruction
from dynrec.render.paths import GENERATED, CameraPath, generated_path, load_camera_file
from dynrec.stages.base import StageContext
from dynrec.stages.gt import gt_world_to_model, heldout_cameras

PATHS = ("training", "orbit", "spiral", "dolly", "static", "heldout")
OVERLAYS = ("tracks", "skeleton")

#: ``progress(description, done, total)``.
ProgressFn = Callable[[str, int, int], None]


@dataclass
class Shot:
    """One render to make: ``name`` (its folder), ``cameras`` and ``times`` [F] paired."""

    name: str
    cameras: CameraPath
    times: list[int]


def parse_size(spec: str | None, width: int, height: int) -> tuple[int, int]:
    """``--size``: ``WxH``, or one number for the longer side (aspect kept); None: ``width`` x ``height``."""
    if spec is None:
        return width, height
    try:
        if "x" in spec.lower():
            w, h = (int(v) for v in spec.lower().split("x"))
        else:
            n = int(spec)
            scale = n / max(width, height)
            w, h = max(round(width * scale), 1), max(round(height * scale), 1)
    except ValueError:
        raise DynrecError(f"--size must be WxH (e.g. 640x480) or the longer side (e.g. 640), got '{spec}'") from None
    if not (1 <= w <= 8192 and 1 <= h <= 8192):
        raise DynrecError(f"--size {spec}: width and height must be 1..8192")
    return w, h


def parse_overlays(spec: str | None) -> list[str]:
    """``--overlay tracks,skeleton`` -> names (empty for None)."""
    return parse_choices(spec, OVERLAYS, "--overlay", "overlay", allow_all=False) if spec else []


def _pair(name: str, cams: CameraPath, times: list[int]) -> Shot:
    """Pair ``len(cams)`` cameras with ``times`` (one of them 1, or equal lengths)."""
    N, M = len(cams), len(times)
    if N == M:
        return Shot(name, cams, times)
    if M == 1:
        return Shot(name, cams, times * N)
    if N == 1:
        return Shot(name, CameraPath(np.repeat(cams.K, M, 0), np.repeat(cams.w2c, M, 0), cams.width, cams.height), times)
    raise DynrecError(f"the path '{name}' has {N} cameras but --time selects {M} frames; pair them one to one, "
                      "or render one frame (--time T) along the whole path")


def _heldout(rec: Reconstruction) -> dict[str, CameraPath]:
    """The ground-truth scene's held-out cameras (every kept frame) in the model's world."""
    runner = rec.runner
    ctx = StageContext(work=rec.root, out=rec.root, gt=runner.gt, inputs={
        "frames": runner.work.stage_dir("frames"), "cameras": runner.work.stage_dir("cameras")})
    cameras = heldout_cameras(ctx)
    if not cameras:
        why = "no ground-truth scene (preprocess with --gt SCENE)" if runner.gt is None else \
            f"the ground-truth scene {runner.gt} has no held-out cameras"
        raise DynrecError(f"--path heldout: {why}")
    to_model = gt_world_to_model(ctx)
    if to_model is None:
        raise DynrecError("--path heldout: the training cameras do not move, so the model's world cannot be "
                          "aligned to the ground truth's")
    return {name: CameraPath(c.K.astype(np.float64), w2c_in_other_world(c.w2c, to_model), c.width, c.height)
            for name, c in cameras.items()}


def plan_shots(rec: Reconstruction, path: str, times: list[int], size: tuple[int, int] | None = None,
               frames: int = 60, camera: int | None = None, name: str | None = None) -> list[Shot]:
    """The renders ``--path path`` asks for at ``times`` (see the module docstring).

    ``size`` (width, height) rescales every camera; ``frames`` is the length of a generated
    path at one time; ``camera`` the training frame whose camera starts a generated path or
    is the static camera (default: the first of ``times``).
    """
    if camera is not None and not 0 <= camera < rec.T:
        raise DynrecError(f"--camera {camera} is outside the video, which has frames 0..{rec.T - 1}")
    if frames < 1:
        raise DynrecError(f"--frames must be >= 1, got {frames}")
    start = times[0] if camera is None else camera
    W, H = rec.width, rec.height
    training = CameraPath(rec.K, rec.w2c, W, H)
    shots: list[Shot]
    if path in ("training", "heldout"):
        paths = {"training": training} if path == "training" else {f"heldout-{n}": c for n, c in _heldout(rec).items()}
        shots = []
        for label, cams in paths.items():
            picked = cams if len(times) == 1 else CameraPath(cams.K[times], cams.w2c[times], cams.width, cams.height)
            shots.append(_pair(label, picked, times))
    elif path == "static":
        shots = [_pair("static", CameraPath(rec.K[[start]], rec.w2c[[start]], W, H), times)]
    elif path in GENERATED:
        count = len(times) if len(times) > 1 else frames
        cams = generated_path(path, rec.K, rec.w2c, rec.foreground_centre(), count, W, H, start)
        shots = [_pair(path, cams, times)]
    elif path.lower().endswith(".json") or Path(path).is_file():
        cams = load_camera_file(Path(path))
        if cams.times is not None:
            bad = [t for t in cams.times if not 0 <= t < rec.T]
            if bad:
                i = next(i for i, t in enumerate(cams.times) if not 0 <= t < rec.T)
                raise DynrecError(f"{path}: frames[{i}].time {bad[0]} is outside the video, which has frames "
                                  f"0..{rec.T - 1}")
            shots = [Shot(Path(path).stem, cams, list(cams.times))]
        else:
            shots = [_pair(Path(path).stem, cams, times)]
    else:
        raise DynrecError(f"--path must be one of {', '.join(PATHS)} or a camera file (.json), got '{path}'"
                          + ("" if not path.lower().endswith(".json") else " (file not found)"))
    if name is not None:
        if not name or name.startswith(".") or "/" in name or "\\" in name:
            raise DynrecError(f"--name must be a plain folder name (no '/', not starting with '.'), got '{name}'")
        if len(shots) > 1:
            raise DynrecError(f"--name: the path '{path}' makes {len(shots)} renders; leave --name out")
        shots[0].name = name
    if size is not None:
        shots = [Shot(s.name, s.cameras.resized(*size), s.times) for s in shots]
    return shots


def render_shot(rec: Reconstruction, shot: Shot, progress: Callable[[int, int], None] | None = None) -> Sequence:
    """Render ``shot`` with :func:`~dynrec.model.scene.render_sequence`."""
    f = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32, device=rec.device)
    cams = shot.cameras
    return render_sequence(rec.scene, f(cams.K), f(cams.w2c), shot.times, cams.width, cams.height, progress=progress)


def overlay_colour(i: int) -> tuple[int, int, int]:
    """RGB of overlay item ``i`` (track or keypoint): golden-ratio hues, distinct neighbours."""
    r, g, b = colorsys.hsv_to_rgb((i * 0.618034) % 1.0, 0.85, 1.0)
    return int(r * 255), int(g * 255), int(b * 255)


def check_overlays(rec: Reconstruction, overlays: list[str]) -> None:
    """The reconstruction has what ``overlays`` draw (3D tracks, keypoints).

    Raises:
        DynrecError: it does not; names the overlay and what is missing.
    """
    if "tracks" in overlays and (rec.tracks is None or rec.tracks.xyz is None):
        raise DynrecError(f"--overlay tracks: the reconstruction in {rec.root} has no 3D tracks")
    if "skeleton" in overlays and (rec.keypoints is None or rec.keypoints.xyz is None):
        raise DynrecError(f"--overlay skeleton: the reconstruction in {rec.root} has no keypoints "
                          "(it needs the keypoints stage and recon.keypoints=true)")


def draw_overlays(rec: Reconstruction, shot: Shot, rgb: np.ndarray, overlays: list[str], trail: int = 5) -> np.ndarray:
    """``rgb`` [F, H, W, 3] uint8 with the model's 3D tracks (points with a ``trail`` of
    earlier frames) and keypoint skeleton projected by each frame's camera."""
    check_overlays(rec, overlays)
    out = rgb.copy()
    cams = shot.cameras
    step = max(1, (0 if rec.tracks is None else len(rec.tracks.xy)) // 200)
    skeleton = np.asarray(rec.keypoints.skeleton).reshape(-1, 2) if rec.keypoints is not None else np.zeros((0, 2), int)
    colours = [overlay_colour(k) for k in range(0, 0 if rec.tracks is None else len(rec.tracks.xy), step)]
    for i, t in enumerate(shot.times):
        img = np.ascontiguousarray(out[i])
        K, w2c = cams.K[i], cams.w2c[i]
        if "tracks" in overlays:
            assert rec.tracks is not None and rec.tracks.xyz is not None
            pts = rec.tracks.xyz[::step, max(0, t - trail):t + 1].astype(np.float64)
            xy, z = project(pts, K, w2c)
            for n in range(len(pts)):
                c = colours[n]
                line = [(float(x), float(y)) for (x, y), d in zip(xy[n], z[n]) if d > 0]
                for a, b in pairwise(line):
                    cv2.line(img, (round(a[0]), round(a[1])), (round(b[0]), round(b[1])), c, 1, cv2.LINE_AA)
                if z[n, -1] > 0:
                    cv2.circle(img, (round(xy[n, -1, 0]), round(xy[n, -1, 1])), 1, c, -1, cv2.LINE_AA)
        if "skeleton" in overlays:
            assert rec.keypoints is not None and rec.keypoints.xyz is not None
            xy, z = project(rec.keypoints.xyz[t].astype(np.float64), K, w2c)
            for a, b in skeleton:
                if z[a] > 0 and z[b] > 0:
                    cv2.line(img, (round(xy[a, 0]), round(xy[a, 1])), (round(xy[b, 0]), round(xy[b, 1])),
                             (255, 255, 255), 1, cv2.LINE_AA)
            for j in range(len(xy)):
                if z[j] > 0:
                    cv2.circle(img, (round(xy[j, 0]), round(xy[j, 1])), 2, overlay_colour(j), -1, cv2.LINE_AA)
        out[i] = img
    return out


def write_shot(folder: Path, rec: Reconstruction, shot: Shot, seq: Sequence, fps: float,
               overlays: list[str]) -> None:
    """Write the files of one render into ``folder`` (new)."""
    rgb = seq.rgb8
    depth_rgb = colorize_depth(seq.depth)
    alpha = (np.clip(seq.alpha, 0, 1) * 255).round().astype(np.uint8)
    write_pngs(folder / "rgb", rgb)
    write_pngs(folder / "depth", depth_rgb)
    write_pngs(folder / "alpha", alpha)
    np.save(folder / "depth.npy", seq.depth.astype(np.float32))
    np.save(folder / "alpha.npy", seq.alpha.astype(np.float32))
    write_video(folder / "rgb.mp4", pad_even(rgb), fps)
    write_video(folder / "depth.mp4", pad_even(depth_rgb), fps)
    if overlays:
        drawn = draw_overlays(rec, shot, rgb, overlays)
        write_pngs(folder / "overlay", drawn)
        write_video(folder / "overlay.mp4", pad_even(drawn), fps)
    cams = shot.cameras
    obj = transforms_json(cams.K, cams.w2c, cams.width, cams.height, shot.times, rec.source_index, fps,
                          [f"rgb/{i:06d}.png" for i in range(len(shot.times))])
    write_transforms(folder / "cameras.json", obj)


def renders_dir(rec: Reconstruction) -> Path:
    """``WORK/renders`` (checked to be a folder, or absent)."""
    folder = rec.root / "renders"
    if folder.exists() and not folder.is_dir():
        raise DynrecError(f"output path {folder} is a file, not a folder; move it away")
    return folder


def _no_progress(description: str, done: int, total: int) -> None:
    return None


def render(rec: Reconstruction, shots: list[Shot], fps: float | None = None, overlays: list[str] | None = None,
           progress: ProgressFn = _no_progress) -> list[Path]:
    """Render and write every shot into ``WORK/renders/<name>/``; returns the folders. Bad
    ``fps`` or ``overlays`` the reconstruction cannot draw fail before anything is rendered."""
    base = renders_dir(rec)
    fps = rec.fps if fps is None else fps
    if fps <= 0:
        raise DynrecError(f"--fps must be positive, got {fps}")
    overlays = overlays or []
    check_overlays(rec, overlays)
    folders = []
    for shot in shots:
        final = base / shot.name
        if final.exists() and not final.is_dir():
            raise DynrecError(f"output path {final} is a file, not a folder; move it away or choose --name")
        seq = render_shot(rec, shot, lambda done, total, n=shot.name: progress(f"render {n}", done, total))
        with replacing_folder(final) as tmp:
            write_shot(tmp, rec, shot, seq, fps, overlays)
        folders.append(final)
    return folders
