"""The artifacts stages exchange. Each is a dataclass with ``save(dir)`` / ``load(dir)``.

Shapes use T frames, H x W pixels, N tracks, J keypoints, E skeleton edges. Conventions
(OpenCV cameras, w2c, +0.5 pixel centres, z-depth with 0 = unknown) are in
:mod:`dynrec.geometry.camera`. Arrays are float32 on disk unless noted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
from PIL import Image

from dynrec.artifacts.base import Field, load_json, load_npz, save_json, save_npz
from dynrec.errors import ArtifactError


def resize_nearest(maps: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize [T, H, W] maps by nearest neighbour (keeps depth values and mask labels exact)."""
    import cv2

    if maps.shape[1:] == (height, width):
        return maps
    dtype = maps.dtype
    src = maps.astype(np.uint8) if dtype == bool else maps
    out = np.stack([cv2.resize(m, (width, height), interpolation=cv2.INTER_NEAREST) for m in src])
    return out.astype(dtype)


def _f32(a: np.ndarray | None) -> np.ndarray | None:
    return None if a is None else np.asarray(a, dtype=np.float32)


def write_pngs(folder: Path, images: np.ndarray, name: str = "{:06d}.png") -> list[str]:
    """Save ``images`` [T, H, W] or [T, H, W, 3] uint8 as ``folder/<name.format(t)>`` (the
    folder is created); returns the file names."""
    folder.mkdir(parents=True, exist_ok=True)
    names = [name.format(t) for t in range(len(images))]
    for img, n in zip(images, names, strict=True):
        Image.fromarray(img).save(folder / n)
    return names


def _read_pngs(folder: Path, names: list[str], mode: str) -> np.ndarray:
    out = []
    for name in names:
        path = folder / name
        if not path.is_file():
            raise ArtifactError(path, None, "image is missing")
        try:
            with Image.open(path) as im:
                out.append(np.asarray(im.convert(mode)))
        except OSError as exc:
            raise ArtifactError(path, None, f"not a readable image ({exc})") from exc
        if out[-1].shape[:2] != out[0].shape[:2]:
            raise ArtifactError(path, None, f"size {out[-1].shape[:2]} differs from {out[0].shape[:2]}")
    return np.stack(out)


@dataclass
class Frames:
    """Video frames. ``images`` [T, H, W, 3] uint8; ``fps`` of the kept frames;
    ``source_index`` [T] the frame index in the input video."""

    images: np.ndarray
    fps: float
    source_index: np.ndarray
    source: str = ""

    FILE = "frames.json"

    @property
    def shape(self) -> tuple[int, int, int]:
        t, h, w, _ = self.images.shape
        return t, h, w

    def save(self, folder: Path) -> None:
        T, H, W = self.shape
        names = write_pngs(folder, self.images)
        save_json(folder / self.FILE, {
            "count": T, "height": H, "width": W, "fps": float(self.fps), "files": names,
            "source_index": [int(i) for i in self.source_index], "source": self.source,
        })

    @classmethod
    def load_meta(cls, folder: Path) -> dict:
        """The metadata only (count, width, height, fps, files, source_index), without images."""
        meta = load_json(folder / cls.FILE, ("count", "height", "width", "fps", "files", "source_index"))
        if len(meta["source_index"]) != meta["count"] or len(meta["files"]) != meta["count"]:
            raise ArtifactError(folder / cls.FILE, "count", "disagrees with the number of files / indices")
        return meta

    @classmethod
    def load(cls, folder: Path) -> Frames:
        meta = cls.load_meta(folder)
        images = _read_pngs(folder, meta["files"], "RGB")
        if images.shape != (meta["count"], meta["height"], meta["width"], 3):
            raise ArtifactError(folder / cls.FILE, "count", f"images have shape {images.shape}, metadata disagrees")
        return cls(images, float(meta["fps"]), np.asarray(meta["source_index"], dtype=np.int64), meta.get("source", ""))


@dataclass
class Masks:
    """Foreground masks [T, H, W] bool (stored as 0/255 PNGs)."""

    masks: np.ndarray
    FILE = "masks.json"

    def save(self, folder: Path) -> None:
        names = write_pngs(folder, (self.masks.astype(np.uint8) * 255))
        T, H, W = self.masks.shape
        save_json(folder / self.FILE, {"count": T, "height": H, "width": W, "files": names})

    @classmethod
    def load(cls, folder: Path) -> Masks:
        meta = load_json(folder / cls.FILE, ("count", "height", "width", "files"))
        masks = _read_pngs(folder, meta["files"], "L") > 127
        if masks.shape != (meta["count"], meta["height"], meta["width"]):
            raise ArtifactError(folder / cls.FILE, "count", f"masks have shape {masks.shape}, metadata disagrees")
        return cls(masks)

    def select(self, index: np.ndarray, width: int, height: int) -> Masks:
        """Keep frames ``index`` and resize to ``width`` x ``height``."""
        return Masks(resize_nearest(self.masks[index], width, height))


@dataclass
class Depth:
    """Z-depth maps ``depth`` [T, H, W] in scene units, 0 = unknown."""

    depth: np.ndarray
    FILE = "depth.npz"
    SPEC: ClassVar[dict[str, Field]] = {"depth": Field(("T", "H", "W"))}

    def save(self, folder: Path) -> None:
        save_npz(folder / self.FILE, {"depth": _f32(self.depth)}, self.SPEC)

    @classmethod
    def load(cls, folder: Path) -> Depth:
        arrays, _ = load_npz(folder / cls.FILE, cls.SPEC)
        if (arrays["depth"] < 0).any():
            raise ArtifactError(folder / cls.FILE, "depth", "negative depth values")
        return cls(arrays["depth"])

    def select(self, index: np.ndarray, width: int, height: int) -> Depth:
        """Keep frames ``index`` and resize to ``width`` x ``height`` (nearest: z stays exact)."""
        return Depth(resize_nearest(self.depth[index], width, height))


@dataclass
class Tracks:
    """2D point tracks.

    ``xy`` [N, T, 2] pixels (+0.5 centres); ``visible`` [N, T] bool; ``confidence`` [N, T]
    in [0, 1]; ``query_frame`` [N] int, the frame each track was seeded in. Ground truth
    adds ``xyz`` [N, T, 3], the world trajectory of each point.
    """

    xy: np.ndarray
    visible: np.ndarray
    confidence: np.ndarray
    query_frame: np.ndarray
    xyz: np.ndarray | None = None

    FILE = "tracks.npz"
    SPEC: ClassVar[dict[str, Field]] = {
        "xy": Field(("N", "T", 2)),
        "visible": Field(("N", "T"), "b"),
        "confidence": Field(("N", "T")),
        "query_frame": Field(("N",), "iu"),
        "xyz": Field(("N", "T", 3), optional=True),
    }

    def save(self, folder: Path) -> None:
        save_npz(folder / self.FILE, {
            "xy": _f32(self.xy), "visible": np.asarray(self.visible, bool),
            "confidence": _f32(self.confidence), "query_frame": np.asarray(self.query_frame, np.int32),
            "xyz": _f32(self.xyz),
        }, self.SPEC)

    @classmethod
    def load(cls, folder: Path) -> Tracks:
        a, dims = load_npz(folder / cls.FILE, cls.SPEC)
        if ((a["query_frame"] < 0) | (a["query_frame"] >= dims["T"])).any():
            raise ArtifactError(folder / cls.FILE, "query_frame", f"values outside 0..{dims['T'] - 1}")
        return cls(a["xy"], a["visible"], a["confidence"], a["query_frame"], a.get("xyz"))

    def select(self, index: np.ndarray, sx: float = 1.0, sy: float = 1.0) -> Tracks:
        """Keep frames ``index``, scale pixel coordinates by (sx, sy); tracks never visible
        in the kept frames are dropped and query frames move to the first visible kept frame.

        With +0.5 pixel centres, resizing an image by s maps x to s * x exactly.
        """
        vis = self.visible[:, index]
        keep = vis.any(axis=1)
        xy = self.xy[keep][:, index] * np.array([sx, sy], dtype=np.float32)
        xyz = None if self.xyz is None else self.xyz[keep][:, index]
        return Tracks(xy, vis[keep], self.confidence[keep][:, index], vis[keep].argmax(axis=1), xyz)


@dataclass
class Cameras:
    """Per-frame cameras: ``K`` [T, 3, 3], ``w2c`` [T, 4, 4] (OpenCV), image ``width``/``height``.

    ``method`` records how they were obtained (``gt``, ``colmap``, ``ba``, ``static``).
    """

    K: np.ndarray
    w2c: np.ndarray
    width: int
    height: int
    method: str = "gt"

    FILE = "cameras.npz"
    SPEC: ClassVar[dict[str, Field]] = {"K": Field(("T", 3, 3)), "w2c": Field(("T", 4, 4)), "size": Field((2,), "iu"),
            "method": Field((), "U")}

    def save(self, folder: Path) -> None:
        save_npz(folder / self.FILE, {
            "K": _f32(self.K), "w2c": _f32(self.w2c),
            "size": np.array([self.width, self.height], np.int32), "method": np.array(self.method),
        }, self.SPEC)

    @classmethod
    def load(cls, folder: Path) -> Cameras:
        a, _ = load_npz(folder / cls.FILE, cls.SPEC)
        rot = a["w2c"][:, :3, :3].astype(np.float64)
        err = np.abs(rot @ rot.transpose(0, 2, 1) - np.eye(3)).max(initial=0.0)
        if err > 1e-3:
            raise ArtifactError(folder / cls.FILE, "w2c", f"rotation blocks are not orthonormal (error {err:.2g})")
        return cls(a["K"], a["w2c"], int(a["size"][0]), int(a["size"][1]), str(a["method"]))

    def select(self, index: np.ndarray, width: int, height: int) -> Cameras:
        """Keep frames ``index``; rescale intrinsics to an image of ``width`` x ``height``."""
        K = self.K[index].copy()
        K[:, 0] *= width / self.width
        K[:, 1] *= height / self.height
        return Cameras(K, self.w2c[index], width, height, self.method)

    @property
    def c2w(self) -> np.ndarray:
        """Camera-to-world [T, 4, 4]."""
        return np.linalg.inv(self.w2c.astype(np.float64))


@dataclass
class Keypoints:
    """Per-frame 2D keypoints.

    ``xy`` [T, J, 2] pixels; ``confidence`` [T, J] in [0, 1] (0 = not detected / invisible);
    ``skeleton`` [E, 2] int pairs of keypoint indices; ``names`` J strings. Ground truth
    adds ``xyz`` [T, J, 3] world positions.
    """

    xy: np.ndarray
    confidence: np.ndarray
    skeleton: np.ndarray
    names: list[str] = field(default_factory=list)
    xyz: np.ndarray | None = None

    FILE = "keypoints.npz"
    SPEC: ClassVar[dict[str, Field]] = {
        "xy": Field(("T", "J", 2)),
        "confidence": Field(("T", "J")),
        "skeleton": Field(("E", 2), "iu"),
        "names": Field(("J",), "U"),
        "xyz": Field(("T", "J", 3), optional=True),
    }

    def save(self, folder: Path) -> None:
        names = self.names or [f"k{j}" for j in range(self.xy.shape[1])]
        save_npz(folder / self.FILE, {
            "xy": _f32(self.xy), "confidence": _f32(self.confidence),
            "skeleton": np.asarray(self.skeleton, np.int32).reshape(-1, 2), "names": np.array(names, dtype=str),
            "xyz": _f32(self.xyz),
        }, self.SPEC)

    @classmethod
    def load(cls, folder: Path) -> Keypoints:
        a, dims = load_npz(folder / cls.FILE, cls.SPEC)
        if ((a["skeleton"] < 0) | (a["skeleton"] >= dims["J"])).any():
            raise ArtifactError(folder / cls.FILE, "skeleton", f"indices outside 0..{dims['J'] - 1}")
        return cls(a["xy"], a["confidence"], a["skeleton"], [str(n) for n in a["names"]], a.get("xyz"))

    def select(self, index: np.ndarray, sx: float = 1.0, sy: float = 1.0) -> Keypoints:
        """Keep frames ``index`` and scale pixel coordinates by (sx, sy)."""
        xyz = None if self.xyz is None else self.xyz[index]
        xy = self.xy[index] * np.array([sx, sy], dtype=np.float32)
        return Keypoints(xy, self.confidence[index], self.skeleton, list(self.names), xyz)


@dataclass
class Lift:
    """Lifted 3D tracks and the HiMoR initialisation (HiMoR §3.2.3).

    ``xyz`` [N, T, 3] world trajectories of the N foreground tracks (gaps filled);
    ``valid`` [N, T] where a depth-lifted sample existed; ``track_index`` [N] rows of the
    tracks artifact; ``canonical`` the canonical frame; ``bases`` [M, T, 4, 4] SE(3) motion
    bases (identity at the canonical frame); ``labels`` [N] cluster of each track;
    ``centres`` [M, 3] canonical cluster centres; ``node_positions`` [L, 3],
    ``node_coefficients`` [L, M], ``node_radii`` [L] level-1 nodes; ``fg_points`` /
    ``bg_points`` [P, 3] and ``fg_colors`` / ``bg_colors`` [P, 3] in [0, 1]: coloured point
    clouds (foreground at the canonical frame, static background from several frames) that
    seed the Gaussians.
    """

    xyz: np.ndarray
    valid: np.ndarray
    track_index: np.ndarray
    canonical: int
    bases: np.ndarray
    labels: np.ndarray
    centres: np.ndarray
    node_positions: np.ndarray
    node_coefficients: np.ndarray
    node_radii: np.ndarray
    fg_points: np.ndarray
    fg_colors: np.ndarray
    bg_points: np.ndarray
    bg_colors: np.ndarray

    FILE = "lift.npz"
    SPEC: ClassVar[dict[str, Field]] = {
        "xyz": Field(("N", "T", 3)), "valid": Field(("N", "T"), "b"), "track_index": Field(("N",), "iu"),
        "canonical": Field((), "iu"), "bases": Field(("M", "T", 4, 4)), "labels": Field(("N",), "iu"),
        "centres": Field(("M", 3)), "node_positions": Field(("L", 3)), "node_coefficients": Field(("L", "M")),
        "node_radii": Field(("L",)), "fg_points": Field(("P", 3)), "fg_colors": Field(("P", 3)),
        "bg_points": Field(("Q", 3)), "bg_colors": Field(("Q", 3)),
    }

    def save(self, folder: Path) -> None:
        arrays = {k: getattr(self, k) for k in self.SPEC}
        arrays = {k: (_f32(v) if np.asarray(v).dtype.kind == "f" else np.asarray(v)) for k, v in arrays.items()}
        save_npz(folder / self.FILE, arrays, self.SPEC)

    @classmethod
    def load(cls, folder: Path) -> Lift:
        a, dims = load_npz(folder / cls.FILE, cls.SPEC)
        if not 0 <= int(a["canonical"]) < dims["T"]:
            raise ArtifactError(folder / cls.FILE, "canonical", f"frame {int(a['canonical'])} outside 0..{dims['T'] - 1}")
        return cls(**{k: (int(v) if k == "canonical" else v) for k, v in a.items()})


@dataclass
class SparsePoints:
    """Static 3D points the cameras were estimated from (SfM / bundle adjustment).

    ``xyz`` [P, 3] world points; ``track_index`` [P] int, the row of the tracks artifact
    each point belongs to; ``error`` [P] its mean reprojection error in pixels.
    """

    xyz: np.ndarray
    track_index: np.ndarray
    error: np.ndarray

    FILE = "points.npz"
    SPEC: ClassVar[dict[str, Field]] = {"xyz": Field(("P", 3)), "track_index": Field(("P",), "iu"), "error": Field(("P",))}

    def save(self, folder: Path) -> None:
        save_npz(folder / self.FILE, {"xyz": _f32(self.xyz), "track_index": np.asarray(self.track_index, np.int32),
                                      "error": _f32(self.error)}, self.SPEC)

    @classmethod
    def load(cls, folder: Path) -> SparsePoints:
        a, _ = load_npz(folder / cls.FILE, cls.SPEC)
        if (a["track_index"] < 0).any():
            raise ArtifactError(folder / cls.FILE, "track_index", "negative track indices")
        return cls(a["xyz"], a["track_index"], a["error"])
