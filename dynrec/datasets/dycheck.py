"""DyCheck iPhone scenes (Gao et al. 2022), as read by DyCheck's own loader
(github.com/KAIR-BAIR/dycheck: ``dycheck/datasets/iphone.py``, ``nerfies.py``,
``dycheck/geometry/camera.py``) and Shape of Motion's ``scripts/evaluate_iphone.py``.

Layout (``SRC``)::

    dataset.json              ids, train_ids, val_ids
    metadata.json             {frame: {warp_id (time), camera_id}}
    scene.json                center [3], scale, near, far
    extra.json                factor, fps, ...
    splits/train.json         frame_names, time_ids, camera_ids (camera 0, the training video)
    splits/val.json           the same for cameras 1, 2 (held-out)
    camera/<frame>.json       at 1x: orientation [3,3], position [3], focal_length, principal_point,
                              image_size [W, H], skew, pixel_aspect_ratio, radial/tangential distortion
    rgb/<f>x/<frame>.png      RGBA
    depth/<f>x/<frame>.npy    [H, W, 1] z-depth in metres (train frames only), 0 = no data
    covisible/<f>x/val/<frame>.png   co-visibility of each val frame with the training video
    keypoint/<f>x/train/<frame>.json [J, 3] (x, y, visible) at the annotated frames; skeleton.json

Conventions (stated once here, tested in tests/test_datasets.py):

* ``orientation`` is the world-to-camera rotation of an **OpenCV** camera (x right, y down,
  z forward: ``Camera`` "uses OpenCV camera model ... (right, down, forward)") and
  ``position`` the camera centre, so ``w2c = [R | -R p]`` (``Camera.extrin``). The Record3D
  (ARKit, OpenGL axes) poses were already converted by DyCheck's processor
  (``c2ws @ diag(1, -1, -1, 1)``), so no axis flip is applied here.
* Intrinsics are stored at 1x; at factor f, ``focal_length`` and ``principal_point`` are
  divided by f (``rescale_image_domain(1 / f)``). DyCheck's pixel centres are at +0.5
  (``get_pixels(use_center=True)``), as ours, so K is used as it is.
* World: the camera files' metric world (ARKit metres), **not** DyCheck's normalised world
  ``x_n = (x - center) * scale`` (``translate(-center).rescale(scale)``); depth and the 5 / 10 cm
  thresholds of Shape of Motion are metric there. ``scene.json``'s centre and scale are kept in
  our ``scene.json`` (``dycheck_scene``).
* Depth ``.npy`` is projective (z) depth in metres (DyCheck's loader multiplies it by ``scale``
  and divides by cos to get ray distance; we keep z in metres).
* Keypoint files store pixel indices; DyCheck's loader adds 0.5 (``keypoints[:, :2] + offset``),
  as we do. They become a ``Keypoints`` artifact (confidence = visible at annotated frames,
  0 elsewhere) with ``xyz`` lifted from the depth by bilinear sampling at the keypoint (Shape of
  Motion's ``cv2.remap``); ``keypoint_depth.npz`` says where that depth was valid.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from dynrec.artifacts import Cameras, Frames, Keypoints
from dynrec.datasets.io import listing, need, read_image_raw, read_json, read_rgb, resize_rgb
from dynrec.datasets.scene import HeldoutView, ImportedScene
from dynrec.errors import DynrecError
from dynrec.geometry.camera import unproject

FORMAT = "dycheck"
RESOLUTIONS = ("1x", "2x")


def read_camera(path: Path, factor: float = 1.0) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """A DyCheck camera file -> ``(K [3, 3], w2c [4, 4], (width, height))`` at 1/``factor`` of the
    stored (1x) resolution, OpenCV axes, +0.5 pixel centres (see the module docstring)."""
    d = read_json(path)
    try:
        R = np.asarray(d["orientation"], dtype=np.float64).reshape(3, 3)
        p = np.asarray(d["position"], dtype=np.float64).reshape(3)
        f = float(d["focal_length"])
        cx, cy = (float(v) for v in d["principal_point"])
        w, h = (int(v) for v in d["image_size"])
        skew = float(d.get("skew", 0.0))
        aspect = float(d.get("pixel_aspect_ratio", 1.0))
    except (KeyError, TypeError, ValueError) as exc:
        raise DynrecError(f"{path}: not a DyCheck camera file ({exc!r} missing or malformed)") from exc
    K = np.array([[f, skew, cx], [0.0, f * aspect, cy], [0.0, 0.0, 1.0]])
    K[:2] /= factor
    w2c = np.eye(4)
    w2c[:3, :3] = R
    w2c[:3, 3] = -R @ p
    return K, w2c, (round(w / factor), round(h / factor))


def _distortion(path: Path) -> bool:
    d = read_json(path)
    return any(float(v) != 0.0 for v in list(d.get("radial_distortion", [])) + list(d.get("tangential_distortion", [])))


def _split(src: Path, name: str) -> tuple[list[str], np.ndarray, np.ndarray] | None:
    """(frame names, time ids, camera ids) of ``splits/<name>.json``, else from ``dataset.json``
    and ``metadata.json`` as DyCheck's ``_create_splits`` does; None when neither says."""
    path = src / "splits" / f"{name}.json"
    if path.is_file():
        d = read_json(path)
        try:
            return [str(n) for n in d["frame_names"]], np.asarray(d["time_ids"], int), np.asarray(d["camera_ids"], int)
        except KeyError as exc:
            raise DynrecError(f"{path}: missing {exc}; expected frame_names, time_ids, camera_ids") from exc
    ids = read_json(src / "dataset.json").get(f"{name}_ids")
    meta_path = src / "metadata.json"
    if ids is None or not meta_path.is_file():
        return None
    meta = read_json(meta_path)
    try:
        times = np.array([meta[n]["warp_id"] for n in ids], int)
        cams = np.array([meta[n]["camera_id"] for n in ids], int)
    except KeyError as exc:
        raise DynrecError(f"{meta_path}: no entry {exc} (listed in dataset.json {name}_ids)") from exc
    return [str(n) for n in ids], times, cams


def _factor_folder(base: Path, factor: int, sub: str = "") -> tuple[Path, int] | None:
    """``base/<factor>x/sub`` if present, else another factor's folder (the caller rescales)."""
    for f in [factor] + [g for g in (1, 2, 4) if g != factor]:
        folder = base / f"{f}x" / sub if sub else base / f"{f}x"
        if folder.is_dir():
            return folder, f
    return None


def _load_depth(src: Path, names: list[str], factor: int, size: tuple[int, int],
                missing: list[str]) -> np.ndarray | None:
    found = _factor_folder(src / "depth", factor)
    if found is None:
        missing.append("depth: no depth/<f>x/ folder")
        return None
    folder, f = found
    W, H = size
    out = np.zeros((len(names), H, W), np.float32)
    absent = []
    for t, name in enumerate(names):
        path = folder / f"{name}.npy"
        if not path.is_file():
            absent.append(name)
            continue
        d = np.load(path).astype(np.float32)
        d = d[..., 0] if d.ndim == 3 else d
        if d.shape != (H, W):
            valid = cv2.resize((d > 0).astype(np.uint8), (W, H), interpolation=cv2.INTER_NEAREST) > 0
            d = cv2.resize(d, (W, H), interpolation=cv2.INTER_NEAREST) * valid
        out[t] = np.maximum(d, 0.0)
    if f != factor:
        missing.append(f"depth: no depth/{factor}x/, resized depth/{f}x/ (nearest)")
    if absent:
        missing.append(f"depth: {len(absent)} of {len(names)} frames have no depth/{f}x/*.npy ({listing(absent)}); "
                       "they are 0 (unknown)")
    return out


def _skeleton(folder: Path, J: int) -> tuple[np.ndarray, list[str]]:
    """Edges (parent, child) and names from ``skeleton.json`` (``parents``, ``kp_names``)."""
    path = folder / "skeleton.json"
    if not path.is_file():
        return np.zeros((0, 2), np.int32), [f"kp{j}" for j in range(J)]
    d = read_json(path)
    parents = list(d.get("parents", [None] * J))
    names = [str(n) for n in d.get("kp_names") or [f"kp{j}" for j in range(J)]]
    if len(parents) != J or len(names) != J:
        raise DynrecError(f"{path}: {len(parents)} parents / {len(names)} names but the keypoint files have {J}")
    edges = [(int(p), j) for j, p in enumerate(parents) if p is not None]
    return np.asarray(edges, np.int32).reshape(-1, 2), names


def _load_keypoints(src: Path, names: list[str], factor: int, cameras: Cameras, depth: np.ndarray | None,
                    missing: list[str]) -> tuple[Keypoints, np.ndarray] | None:
    found = _factor_folder(src / "keypoint", factor, "train")
    if found is None:
        missing.append("keypoints: no keypoint/<f>x/train/ folder")
        return None
    folder, f = found
    files = {name: folder / f"{name}.json" for name in names if (folder / f"{name}.json").is_file()}
    if not files:
        missing.append(f"keypoints: {folder} has no file of a train frame")
        return None
    raw = {name: np.asarray(read_json(path), np.float64).reshape(-1, 3) for name, path in files.items()}
    J = {len(v) for v in raw.values()}
    if len(J) != 1:
        raise DynrecError(f"{folder}: keypoint files disagree on the number of keypoints ({sorted(J)})")
    (nj,) = J
    T = len(names)
    xy = np.zeros((T, nj, 2))
    conf = np.zeros((T, nj))
    scale = f / factor  # stored coordinates are at factor f
    for t, name in enumerate(names):
        if name in raw:
            kp = raw[name]
            xy[t] = (kp[:, :2] + 0.5) * scale  # pixel indices -> +0.5 centres (DyCheck's loader), rescaled
            conf[t] = kp[:, 2] == 1
    xyz = np.zeros((T, nj, 3))
    valid = np.zeros((T, nj), bool)
    if depth is not None:
        for t in range(T):
            if not conf[t].any():
                continue
            idx = (xy[t] - 0.5).astype(np.float32)[None]  # cv2.remap samples pixel indices
            z = cv2.remap(depth[t], idx, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)[0]
            ok = cv2.remap((depth[t] > 0).astype(np.float32), idx, None, cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT)[0] == 1
            valid[t] = ok & (conf[t] > 0)
            pts = unproject(xy[t], z.astype(np.float64), cameras.K[t].astype(np.float64),
                            cameras.w2c[t].astype(np.float64))
            xyz[t] = np.where(valid[t][:, None], pts, 0.0)
    edges, kp_names = _skeleton(folder, nj)
    return Keypoints(xy, conf, edges, kp_names, xyz if depth is not None else None), valid


def _covisible(src: Path, name: str, factor: int, size: tuple[int, int]) -> np.ndarray | None:
    found = _factor_folder(src / "covisible", factor, "val")
    if found is None or not (found[0] / f"{name}.png").is_file():
        return None
    m = read_image_raw(found[0] / f"{name}.png")
    m = m[..., 0] if m.ndim == 3 else m
    W, H = size
    if m.shape != (H, W):
        m = cv2.resize(m.astype(np.uint8), (W, H), interpolation=cv2.INTER_NEAREST)
    return m > 127


def convert(src: Path, *, resolution: str | None = None, scene: str | None = None) -> ImportedScene:
    """Read the DyCheck iPhone scene ``src`` at ``resolution`` ``1x`` or ``2x`` (default: the
    scene's ``extra.json`` factor, DyCheck's evaluation resolution)."""
    need(src / "dataset.json", "DyCheck iPhone", "dataset.json")
    need(src / "camera", "DyCheck iPhone", "camera/<frame>.json")
    extra = read_json(src / "extra.json") if (src / "extra.json").is_file() else {}
    res = resolution or f"{int(extra.get('factor', 2))}x"
    if res not in RESOLUTIONS:
        raise DynrecError(f"dycheck: resolution must be one of {', '.join(RESOLUTIONS)}, got {res!r}")
    factor = int(res[0])
    missing: list[str] = []
    train = _split(src, "train")
    if train is None:
        raise DynrecError(f"not a DyCheck iPhone scene: expected {src / 'splits' / 'train.json'} "
                          "(or train_ids in dataset.json with metadata.json)")
    names, times, cams = train
    if (cams != 0).any():
        raise DynrecError(f"{src / 'splits' / 'train.json'}: the training split has camera ids {sorted(set(cams.tolist()))}; "
                          "DyCheck's training video is camera 0")
    rgb_dir = src / "rgb" / res
    need(rgb_dir, "DyCheck iPhone", f"rgb/{res}/ images; this scene has "
         f"{', '.join(sorted(p.name for p in (src / 'rgb').iterdir())) if (src / 'rgb').is_dir() else 'no rgb/'}")
    absent = [n for n in names if not (rgb_dir / f"{n}.png").is_file()]
    if absent:
        raise DynrecError(f"{rgb_dir}: {len(absent)} of {len(names)} train frames have no image ({listing(absent)})")
    absent = [n for n in names if not (src / "camera" / f"{n}.json").is_file()]
    if absent:
        raise DynrecError(f"{src / 'camera'}: {len(absent)} of {len(names)} train frames have no camera ({listing(absent)})")
    images = [read_rgb(rgb_dir / f"{n}.png") for n in names]
    H, W = images[0].shape[:2]
    bad = [n for n, im in zip(names, images, strict=True) if im.shape[:2] != (H, W)]
    if bad:
        raise DynrecError(f"{rgb_dir}: frames {listing(bad)} differ in size from {names[0]} ({W}x{H})")
    Ks, w2cs = [], []
    for n in names:
        K, w2c, size = read_camera(src / "camera" / f"{n}.json", factor)
        if abs(size[0] - W) > 1 or abs(size[1] - H) > 1:
            raise DynrecError(f"{src / 'camera' / f'{n}.json'}: image_size / {factor} is {size[0]}x{size[1]} but "
                              f"{rgb_dir / f'{n}.png'} is {W}x{H}")
        Ks.append(K)
        w2cs.append(w2c)
    if _distortion(src / "camera" / f"{names[0]}.json"):
        missing.append("cameras: the camera files have lens distortion, which is ignored (DyCheck's iPhone loader "
                       "ignores it too: use_undistort=False)")
    fps = float(extra.get("fps", 30.0))
    if "fps" not in extra:
        missing.append("fps: no extra.json, 30 fps assumed")
    frames = Frames(np.stack(images), fps, np.arange(len(names)), f"dycheck {src} rgb/{res}")
    cameras = Cameras(np.stack(Ks), np.stack(w2cs), W, H, "gt")
    depth = _load_depth(src, names, factor, (W, H), missing)
    kp = _load_keypoints(src, names, factor, cameras, depth, missing)
    heldout = _heldout(src, times, factor, (W, H), fps, missing)
    scene_info = read_json(src / "scene.json") if (src / "scene.json").is_file() else None
    if scene_info is None:
        missing.append("scene.json: DyCheck's normalised world (centre, scale) is unknown")
    info: dict[str, Any] = {
        "units": "metres", "resolution": res, "factor": factor, "source": str(src), "time_ids": times.tolist(),
        "frame_names": names, "world": "DyCheck camera files (metric, before scene.json centre/scale)",
        "heldout_split": "val" if heldout else None,
    }
    if scene_info is not None:
        info["dycheck_scene"] = {k: scene_info.get(k) for k in ("center", "scale", "near", "far")}
    return ImportedScene(
        FORMAT, scene or src.name, "train", frames, cameras, depth, None, None,
        kp[0] if kp else None, kp[1] if kp else None, heldout, info, missing, eval_only=("keypoints",))


def _heldout(src: Path, train_times: np.ndarray, factor: int, size: tuple[int, int], fps: float,
             missing: list[str]) -> dict[str, HeldoutView]:
    """The val cameras at the training video's times (black, not co-visible, where missing), at
    the training video's ``fps``."""
    val = _split(src, "val")
    if val is None:
        missing.append("held-out views: no splits/val.json (nor val_ids in dataset.json)")
        return {}
    names, times, cams = val
    if not names:
        missing.append("held-out views: the val split is empty (a scene without multi-camera capture)")
        return {}
    W, H = size
    T = len(train_times)
    out: dict[str, HeldoutView] = {}
    res = f"{factor}x"
    covis_dir = _factor_folder(src / "covisible", factor, "val")
    if covis_dir is not None and covis_dir[1] != factor:
        missing.append(f"co-visibility: no covisible/{res}/val/, resized covisible/{covis_dir[1]}x/val/ (nearest)")
    for cam in sorted(set(cams.tolist())):
        rows = {int(t): n for n, t, c in zip(names, times, cams, strict=True) if c == cam}
        present = [t for t in train_times.tolist() if t in rows]
        if not present:
            missing.append(f"held-out camera {cam}: none of its frames is at a training time")
            continue
        images = np.zeros((T, H, W, 3), np.uint8)
        covis = np.zeros((T, H, W), bool)
        Ks, w2cs, no_covis, no_rgb = [], [], [], []
        for k, t in enumerate(train_times.tolist()):
            name = rows.get(t) or rows[min(present, key=lambda s: abs(s - t))]
            K, w2c, _ = read_camera(need(src / "camera" / f"{name}.json", "DyCheck iPhone"), factor)
            Ks.append(K)
            w2cs.append(w2c)
            if t not in rows:
                continue
            path = src / "rgb" / res / f"{name}.png"
            if not path.is_file():
                no_rgb.append(name)
                continue
            images[k] = resize_rgb(read_rgb(path), W, H)
            m = _covisible(src, name, factor, size)
            if m is None:
                no_covis.append(name)
            else:
                covis[k] = m
        if no_rgb:
            missing.append(f"held-out camera {cam}: {len(no_rgb)} val frames have no rgb/{res} image ({listing(no_rgb)})")
        if len(no_covis) == len(present) - len(no_rgb):
            missing.append(f"held-out camera {cam}: no covisible/{res}/val/ masks; evaluate computes them if it can")
            covis_out = None
        else:
            covis_out = covis
            if no_covis:
                missing.append(f"held-out camera {cam}: {len(no_covis)} val frames have no co-visibility mask "
                               f"({listing(no_covis)}); not evaluated there")
        cameras = Cameras(np.stack(Ks), np.stack(w2cs), W, H, "gt")
        out[f"cam{cam}"] = HeldoutView(Frames(images, fps, np.arange(T), f"dycheck {src} camera {cam}"),
                                       cameras, covis_out)
    return out
