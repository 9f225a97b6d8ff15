"""Writers of small scenes in the real layouts of the benchmark datasets, for the importer tests.

Each writes the files the dataset's own loader reads, with its conventions (DyCheck: OpenCV
camera JSON at 1x with orientation = world-to-camera rotation and position = centre, keypoint
pixel indices without the +0.5, RGBA PNGs, ``[H, W, 1]`` depth ``.npy``; DAVIS: JPEG frames and
palette PNG annotations; TUM: text lists, 16-bit depth at 5000 per metre, c2w quaternions).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from scipy.spatial.transform import Rotation

from dynrec.artifacts import Cameras, Depth, Frames, Masks, Tracks

#: Two real camera files of DyCheck's demo scene (github.com/KAIR-BAIR/dycheck,
#: demo/datasets/iphone/paper-windmill/camera/{0,1}_00000.json, Apache-2.0).
PAPER_WINDMILL_0 = {
    "focal_length": 719.9471435546875, "image_size": [720, 960],
    "orientation": [[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]], "pixel_aspect_ratio": 1.0,
    "position": [0.0, 4.656612873077393e-10, 0.0], "principal_point": [358.8895263671875, 484.92236328125],
    "radial_distortion": [0.0, 0.0, 0.0], "skew": 0.0, "tangential_distortion": [0.0, 0.0]}
PAPER_WINDMILL_1 = {
    "focal_length": 728.0621948242188, "image_size": [720, 960],
    "orientation": [[0.7049072293927248, 0.1774618831734979, -0.686740910366047],
                    [0.1855625743709249, -0.9806152132240489, -0.06293118929742347],
                    [-0.6845964716113472, -0.08307276096332039, -0.7241730369485078]],
    "pixel_aspect_ratio": 1.0, "position": [0.6132469803826539, 0.02343151654742622, -0.1958560882782383],
    "principal_point": [357.0081787109375, 465.3565979003906], "radial_distortion": [0.0, 0.0, 0.0],
    "skew": 0.0, "tangential_distortion": [0.0, 0.0]}


def dycheck_camera_json(K: np.ndarray, w2c: np.ndarray, width: int, height: int, factor: int) -> dict:
    """A DyCheck camera dict at 1x for a camera ``K``, ``w2c`` of an image at 1/``factor``."""
    R = w2c[:3, :3]
    return {"focal_length": float(K[0, 0] * factor), "image_size": [width * factor, height * factor],
            "orientation": R.tolist(), "position": (-R.T @ w2c[:3, 3]).tolist(), "pixel_aspect_ratio": 1.0,
            "principal_point": [float(K[0, 2] * factor), float(K[1, 2] * factor)], "skew": 0.0,
            "radial_distortion": [0.0, 0.0, 0.0], "tangential_distortion": [0.0, 0.0]}


def write_dycheck(scene: Path, out: Path, *, factor: int = 2, keypoint_frames: tuple[int, ...] = (0, 5, 10, 15),
                  n_keypoints: int = 8, val_missing: tuple[int, ...] = (3,)) -> dict:
    """The synth ``scene`` in DyCheck's iPhone layout at ``rgb/<factor>x`` (the synth size):
    training camera 0, held-out ``cam0`` as camera 1 (its frames ``val_missing`` absent, as
    DyCheck's bad val frames), ``n_keypoints`` foreground ground-truth tracks as keypoints
    annotated at ``keypoint_frames``. Returns what was written (for the assertions)."""
    frames = Frames.load(scene / "gt" / "frames")
    cams = Cameras.load(scene / "gt" / "cameras")
    depth = Depth.load(scene / "gt" / "depth").depth
    tracks = Tracks.load(scene / "gt" / "tracks")
    T, H, W = frames.shape
    res = f"{factor}x"
    train = [f"0_{t:05d}" for t in range(T)]
    for t, name in enumerate(train):
        _write(out / "camera" / f"{name}.json", dycheck_camera_json(cams.K[t], cams.w2c[t], W, H, factor))
        rgba = np.concatenate([frames.images[t], np.full((H, W, 1), 255, np.uint8)], -1)
        (out / "rgb" / res).mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgba).save(out / "rgb" / res / f"{name}.png")
        (out / "depth" / res).mkdir(parents=True, exist_ok=True)
        np.save(out / "depth" / res / f"{name}.npy", depth[t][..., None].astype(np.float32))
    hcams = Cameras.load(scene / "heldout" / "cam0" / "cameras")
    himg = Frames.load(scene / "heldout" / "cam0" / "frames").images
    val = [f"1_{t:05d}" for t in range(T) if t not in val_missing]
    rng = np.random.default_rng(0)
    covis = {}
    for name in val:
        t = int(name[2:])
        _write(out / "camera" / f"{name}.json", dycheck_camera_json(hcams.K[t], hcams.w2c[t], W, H, factor))
        Image.fromarray(himg[t]).save(out / "rgb" / res / f"{name}.png")
        covis[t] = rng.random((H, W)) > 0.3
        (out / "covisible" / res / "val").mkdir(parents=True, exist_ok=True)
        Image.fromarray(covis[t].astype(np.uint8) * 255).save(out / "covisible" / res / "val" / f"{name}.png")
    # keypoints: foreground tracks visible at every annotated frame, stored as pixel indices
    fg = Masks.load(scene / "gt" / "masks").masks
    ok = tracks.visible[:, list(keypoint_frames)].all(1)
    qf = tracks.query_frame
    on_fg = fg[qf, tracks.xy[np.arange(len(qf)), qf, 1].astype(int), tracks.xy[np.arange(len(qf)), qf, 0].astype(int)]
    rows = np.flatnonzero(ok & on_fg)[:n_keypoints]
    kp_dir = out / "keypoint" / res / "train"
    for t in keypoint_frames:
        kps = [[float(x) - 0.5, float(y) - 0.5, 1.0] for x, y in tracks.xy[rows, t]]
        kps[-1][2] = 0.0 if t == keypoint_frames[-1] else 1.0  # one invisible keypoint
        _write(kp_dir / f"{train[t]}.json", kps)
    _write(kp_dir / "skeleton.json", {"name": "skeleton", "parents": [None] + list(range(len(rows) - 1)),
                                      "kp_names": [f"p{i}" for i in range(len(rows))], "palette": None})
    _write(out / "dataset.json", {"count": len(train) + len(val), "num_exemplars": T, "ids": train + val,
                                  "train_ids": train, "val_ids": val})
    _write(out / "splits" / "train.json", {"frame_names": train, "time_ids": list(range(T)), "camera_ids": [0] * T})
    _write(out / "splits" / "val.json", {"frame_names": val, "time_ids": [int(n[2:]) for n in val],
                                         "camera_ids": [1] * len(val)})
    _write(out / "scene.json", {"center": [0.1, 0.2, 0.3], "scale": 0.5, "near": 0.1, "far": 2.0})
    _write(out / "extra.json", {"factor": factor, "fps": 10.0, "bbox": [[-1, -1, -1], [1, 1, 1]],
                                "lookat": [0, 0, 0], "up": [0, 0, 1]})
    return {"rows": rows, "covis": covis, "val_missing": val_missing, "keypoint_frames": keypoint_frames}


def write_davis(root: Path, seq: str, images: np.ndarray, labels: np.ndarray, split: str = "val") -> None:
    """DAVIS 2017 layout: ``JPEGImages/480p/<seq>/%05d.jpg``, palette ``Annotations/480p/<seq>/%05d.png``."""
    jpg, ann = root / "JPEGImages" / "480p" / seq, root / "Annotations" / "480p" / seq
    jpg.mkdir(parents=True)
    ann.mkdir(parents=True)
    palette = [0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0] + [0] * (256 * 3 - 12)
    for t, (img, lab) in enumerate(zip(images, labels, strict=True)):
        Image.fromarray(img).save(jpg / f"{t:05d}.jpg", quality=95)
        p = Image.fromarray(lab.astype(np.uint8), mode="P")
        p.putpalette(palette)
        p.save(ann / f"{t:05d}.png")
    (root / "ImageSets" / "2017").mkdir(parents=True, exist_ok=True)
    (root / "ImageSets" / "2017" / f"{split}.txt").write_text(f"other\n{seq}\n")


def write_tum(out: Path, images: np.ndarray, depth_m: np.ndarray, c2w: np.ndarray, t0: float = 1305031102.175304,
              dt: float = 1 / 30) -> np.ndarray:
    """TUM RGB-D layout with colour at ``t0 + k dt``, depth 5 ms later, ground truth at 100 Hz
    (interpolated here by holding each frame's pose, the frame's own stamp + 2 ms). Returns the
    colour stamps."""
    (out / "rgb").mkdir(parents=True)
    (out / "depth").mkdir()
    stamps = t0 + dt * np.arange(len(images))
    rgb_lines, depth_lines, gt_lines = ["# color images"], ["# depth maps"], ["# timestamp tx ty tz qx qy qz qw"]
    for k, (img, d) in enumerate(zip(images, depth_m, strict=True)):
        ts, td = f"{stamps[k]:.6f}", f"{stamps[k] + 0.005:.6f}"
        cv2.imwrite(str(out / "rgb" / f"{ts}.png"), img[..., ::-1])
        cv2.imwrite(str(out / "depth" / f"{td}.png"), np.round(d * 5000).astype(np.uint16))
        rgb_lines.append(f"{ts} rgb/{ts}.png")
        depth_lines.append(f"{td} depth/{td}.png")
        q = Rotation.from_matrix(c2w[k][:3, :3]).as_quat()
        tx, ty, tz = c2w[k][:3, 3]
        gt_lines.append(f"{stamps[k] + 0.002:.4f} {tx:.6f} {ty:.6f} {tz:.6f} {q[0]:.8f} {q[1]:.8f} {q[2]:.8f} {q[3]:.8f}")
    (out / "rgb.txt").write_text("\n".join(rgb_lines) + "\n")
    (out / "depth.txt").write_text("\n".join(depth_lines) + "\n")
    (out / "groundtruth.txt").write_text("\n".join(gt_lines) + "\n")
    return stamps


def _write(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1))


def llff_row(K: np.ndarray, w2c: np.ndarray, width: int, height: int, scale: float = 1.0) -> np.ndarray:
    """An LLFF ``poses_bounds`` row [17] for an OpenCV camera: rotation columns (down, right,
    backwards), hwf at ``scale`` times the image size, near / far 0.1 / 10."""
    c2w = np.linalg.inv(w2c)
    m = np.zeros((3, 5))
    m[:, 0], m[:, 1], m[:, 2] = c2w[:3, 1], c2w[:3, 0], -c2w[:3, 2]
    m[:, 3] = c2w[:3, 3]
    m[:, 4] = [height * scale, width * scale, K[0, 0] * scale]
    return np.concatenate([m.ravel(), [0.1, 10.0]])


def write_nvidia(scene: Path, out: Path) -> None:
    """A static-camera synth ``scene`` as an NSFF Nvidia scene: the training view as cam04, held-out
    cam0 / cam1 as cam03 / cam05, the other rig slots repeating cam04; poses at 2x (hwf rescaled);
    training masks in mv_masks; 12 extra rows as the monocular images' poses."""
    frames = Frames.load(scene / "gt" / "frames").images
    T, H, W = frames.shape[:3]
    cams = Cameras.load(scene / "gt" / "cameras")
    views = {3: ("heldout/cam0", None), 4: ("gt", None), 5: ("heldout/cam1", None)}
    imgs = {k: Frames.load(scene / v / "frames").images for k, (v, _) in views.items()}
    rig = {k: Cameras.load(scene / v / "cameras") for k, (v, _) in views.items()}
    rows = [llff_row(rig.get(c, cams).K[0], rig.get(c, cams).w2c[0].astype(np.float64), W, H, 2.0)
            for c in range(1, 13)]
    dense = out / "dense"
    masks = Masks.load(scene / "gt" / "masks").masks
    for t in range(T):
        (dense / "mv_images" / f"{t:05d}").mkdir(parents=True)
        (dense / "mv_masks" / f"{t:05d}").mkdir(parents=True)
        for c in range(1, 13):
            Image.fromarray(imgs.get(c, imgs[4])[t]).save(dense / "mv_images" / f"{t:05d}" / f"cam{c:02d}.jpg",
                                                           quality=95)
        Image.fromarray(masks[t].astype(np.uint8) * 255).save(dense / "mv_masks" / f"{t:05d}" / "cam04.png")
    np.save(dense / "poses_bounds.npy", np.stack(rows + rows))
