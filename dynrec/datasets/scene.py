"""An imported dataset scene, written in the layout of a synth scene (docs/synth-format.md) so
that the ``gt`` backends, ``evaluate`` and the held-out renders read it unchanged.

Every importer returns an :class:`ImportedScene`: the training view's frames and whatever
ground truth the dataset has (``None`` where it has none), with the project's conventions
already applied (OpenCV cameras, ``w2c``, pixel centres at +0.5, z-depth with 0 = unknown,
see :mod:`dynrec.geometry.camera`). :func:`write_scene` writes it as::

    SCENE/scene.json                    format, dataset, scene, split, fps, size, heldout, missing, ...
    SCENE/gt/{frames,cameras,depth,masks,tracks,keypoints}/   (those that exist)
    SCENE/gt/keypoint_depth.npz         valid_3d [T, J]: keypoints whose xyz was lifted from valid depth
    SCENE/heldout/<cam>/{frames,cameras,covisible,depth,masks}/
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dynrec.artifacts import Cameras, Depth, Frames, Keypoints, Masks, Tracks
from dynrec.artifacts.base import Field, save_json, save_npz
from dynrec.errors import DynrecError

FORMAT = 1
KEYPOINT_DEPTH_FILE = "keypoint_depth.npz"
KEYPOINT_DEPTH_SPEC = {"valid_3d": Field(("T", "J"), "b")}


@dataclass
class HeldoutView:
    """A held-out camera at the training frames' times: ``frames`` [T, H, W, 3] (black where the
    dataset has no image at that time), ``cameras`` (T per-frame cameras), ``covisible`` [T, H, W]
    (the dataset's co-visibility masks; all False at times without an image), optional
    ``depth`` / ``masks``."""

    frames: Frames
    cameras: Cameras
    covisible: np.ndarray | None = None
    depth: np.ndarray | None = None
    masks: np.ndarray | None = None

    def take(self, index: np.ndarray, fps: float) -> HeldoutView:
        """The view at frames ``index`` [T'], its frames at ``fps`` (the training view's)."""
        f, c = self.frames, self.cameras
        return HeldoutView(Frames(f.images[index], fps, np.arange(len(index)), f.source),
                           Cameras(c.K[index], c.w2c[index], c.width, c.height, c.method),
                           *(None if a is None else a[index] for a in (self.covisible, self.depth, self.masks)))


@dataclass
class ImportedScene:
    """What an importer read. ``info`` goes into ``scene.json`` (``dataset``, ``scene``, ``split``,
    units, conversions applied); ``missing`` lists, for the user, what the dataset should have
    had but did not (``"depth: 3 of 20 frames have no depth/2x/*.npy (0_00003, ...)"``);
    ``eval_only`` names ground truth that is for evaluation only and must not be copied into
    the work dir by a ``gt`` backend (e.g. DyCheck's sparse keypoint annotations)."""

    dataset: str
    scene: str
    split: str
    frames: Frames
    cameras: Cameras | None = None
    depth: np.ndarray | None = None
    masks: np.ndarray | None = None
    tracks: Tracks | None = None
    keypoints: Keypoints | None = None
    keypoint_valid_3d: np.ndarray | None = None
    heldout: dict[str, HeldoutView] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    eval_only: tuple[str, ...] = ()

    @property
    def T(self) -> int:
        return self.frames.shape[0]

    def modalities(self) -> list[str]:
        """Ground-truth artifacts present, in stage order."""
        have = {"cameras": self.cameras, "depth": self.depth, "masks": self.masks, "tracks": self.tracks,
                "keypoints": self.keypoints}
        return [k for k, v in have.items() if v is not None]

    def gt_stages(self) -> list[str]:
        """Stages whose ``gt`` backend can copy this scene's ground truth."""
        return [m for m in self.modalities() if m not in self.eval_only]

    def take(self, index: np.ndarray) -> ImportedScene:
        """The scene at frames ``index`` [T'] of its frames (a benchmark's frame subset);
        ``info["frame_indices"]`` records them in the dataset's frame order. A stride lowers the
        frame rate of the training and the held-out views alike (fps / median step)."""
        index = np.asarray(index, dtype=np.int64)
        if len(index) < 2:
            raise DynrecError(f"{self.dataset} import: the frame selection keeps {len(index)} of {self.T} frames; "
                              "dynrec needs at least 2")
        f = self.frames
        step = float(np.median(np.diff(index)))  # a stride lowers the frame rate
        frames = Frames(f.images[index], f.fps / max(step, 1.0), np.arange(len(index)), f.source)
        cams = self.cameras
        cameras = None if cams is None else Cameras(cams.K[index], cams.w2c[index], cams.width, cams.height, cams.method)
        heldout = {name: v.take(index, frames.fps) for name, v in self.heldout.items()}
        info = {k: ([v[i] for i in index] if isinstance(v, list) and len(v) == self.T else v)
                for k, v in self.info.items()}
        previous = self.info.get("frame_indices")
        info["frame_indices"] = [int(previous[i]) if previous else int(i) for i in index]
        return ImportedScene(
            self.dataset, self.scene, self.split, frames, cameras,
            None if self.depth is None else self.depth[index], None if self.masks is None else self.masks[index],
            None if self.tracks is None else self.tracks.select(index),
            None if self.keypoints is None else self.keypoints.select(index),
            None if self.keypoint_valid_3d is None else self.keypoint_valid_3d[index],
            heldout, info, list(self.missing), self.eval_only)

    def check(self) -> None:
        """Every modality has the training view's frame count and size; errors name both."""
        T, H, W = self.frames.shape
        per_frame = {"depth": self.depth, "masks": self.masks}
        for name, arr in per_frame.items():
            if arr is not None and arr.shape != (T, H, W):
                raise DynrecError(f"{self.dataset} import: {name} has shape {tuple(arr.shape)} but the frames are "
                                  f"{T} x {H} x {W}")
        if self.cameras is not None and (len(self.cameras.w2c) != T or (self.cameras.width, self.cameras.height) != (W, H)):
            raise DynrecError(f"{self.dataset} import: {len(self.cameras.w2c)} cameras of "
                              f"{self.cameras.width}x{self.cameras.height} but {T} frames of {W}x{H}")
        if self.tracks is not None and self.tracks.xy.shape[1] != T:
            raise DynrecError(f"{self.dataset} import: tracks have {self.tracks.xy.shape[1]} frames, the video {T}")
        if self.keypoints is not None and self.keypoints.xy.shape[0] != T:
            raise DynrecError(f"{self.dataset} import: keypoints have {self.keypoints.xy.shape[0]} frames, the video {T}")
        for cam, view in self.heldout.items():
            if view.frames.shape[0] != T or len(view.cameras.w2c) != T:
                raise DynrecError(f"{self.dataset} import: held-out camera {cam} has {view.frames.shape[0]} frames "
                                  f"and {len(view.cameras.w2c)} cameras, the training view {T}")


def _save_view(folder: Path, frames: Frames, cameras: Cameras | None, **maps: np.ndarray | None) -> None:
    """``folder/{frames,cameras}`` and each of ``maps`` that is not None as ``folder/<name>``
    (``depth`` a Depth artifact, the others Masks)."""
    frames.save(folder / "frames")
    if cameras is not None:
        cameras.save(folder / "cameras")
    for name, arr in maps.items():
        if arr is not None:
            (Depth(arr) if name == "depth" else Masks(arr)).save(folder / name)


def write_scene(scene: ImportedScene, out: Path) -> dict[str, Any]:
    """Write ``scene`` into the folder ``out`` (synth layout); ``scene.json`` last. Returns it."""
    scene.check()
    T, H, W = scene.frames.shape
    gt = out / "gt"
    _save_view(gt, scene.frames, scene.cameras, depth=scene.depth, masks=scene.masks)
    if scene.tracks is not None:
        scene.tracks.save(gt / "tracks")
    if scene.keypoints is not None:
        scene.keypoints.save(gt / "keypoints")
        if scene.keypoint_valid_3d is not None:
            save_npz(gt / KEYPOINT_DEPTH_FILE, {"valid_3d": scene.keypoint_valid_3d}, KEYPOINT_DEPTH_SPEC)
    for cam, view in scene.heldout.items():
        _save_view(out / "heldout" / cam, view.frames, view.cameras, covisible=view.covisible, depth=view.depth,
                   masks=view.masks)
    info = {
        "format": FORMAT, "dataset": scene.dataset, "scene": scene.scene, "split": scene.split,
        "fps": scene.frames.fps, "width": W, "height": H, "frames": T, "heldout": sorted(scene.heldout),
        "modalities": scene.modalities(), "gt_stages": scene.gt_stages(), "missing": scene.missing,
        **scene.info,
    }
    save_json(out / "scene.json", info)
    return info


def load_keypoint_valid_3d(scene: Path) -> np.ndarray | None:
    """``valid_3d`` [T, J] of an imported scene's keypoints, or None when it has none."""
    from dynrec.artifacts.base import load_npz

    path = scene / "gt" / KEYPOINT_DEPTH_FILE
    if not path.is_file():
        return None
    return load_npz(path, KEYPOINT_DEPTH_SPEC)[0]["valid_3d"]
