"""``generate``: render a synthetic scene and write the video plus all ground truth.

The layout is documented in ``docs/synth-format.md``; ``scene.json`` is written last, so a
folder without it is an interrupted generation.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from dynrec.artifacts.base import Field, save_json, save_npz
from dynrec.artifacts.types import Cameras, Depth, Frames, Keypoints, Masks, Tracks
from dynrec.errors import DynrecError
from dynrec.synth.families import FAMILY_NAMES
from dynrec.synth.presets import PRESETS, SynthPreset
from dynrec.synth.scene import RIGS, Scene, View, build_scene
from dynrec.synth.truth import KeypointTruth, keypoint_truth, sample_points, track_truth
from dynrec.synth.video import write_video

FORMAT = 1
PART_MAP_SPEC = {"part_map": Field(("T", "H", "W"), "u")}
TRACK_PART_SPEC = {"track_part": Field(("N",), "iu")}

Progress = Callable[[int, int], None]


def _preset(name: str) -> SynthPreset:
    if name not in PRESETS:
        raise DynrecError(f"unknown synth preset '{name}'; known presets: {', '.join(PRESETS)}")
    return PRESETS[name]


def _prepare_output(out: Path) -> Path:
    """Create ``out`` or accept it if it is an empty folder."""
    if out.exists():
        if not out.is_dir():
            raise DynrecError(f"{out} exists and is not a folder; choose a new output folder")
        if any(out.iterdir()):
            raise DynrecError(f"{out} is not empty; choose a new or empty output folder")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _render_all(scene: Scene, w2c: np.ndarray, tick: Callable[[], None]) -> list[View]:
    """Render every frame from cameras ``w2c`` [T, 4, 4]."""
    views = []
    for t in range(scene.preset.frames):
        views.append(scene.render(t, w2c[t]))
        tick()
    return views


def keypoint_speeds(xy: np.ndarray, visible: np.ndarray) -> np.ndarray:
    """Peak image speed [J] (pixels/frame) of keypoints ``xy`` [T, J, 2] over frame pairs
    where ``visible`` [T, J] holds in both frames (0 where there is none)."""
    step = np.linalg.norm(np.diff(xy, axis=0), axis=-1)
    both = visible[1:] & visible[:-1]
    return np.where(both, step, 0.0).max(axis=0, initial=0.0)


def _write_view(
    folder: Path, scene: Scene, views: list[View], w2c: np.ndarray, kp: KeypointTruth
) -> None:
    """Frames, masks, depth, cameras, keypoints and part map of one camera."""
    p = scene.preset
    images = np.stack([v.rgb for v in views])
    parts = np.stack([v.part for v in views])
    Frames(images, p.fps, np.arange(p.frames), source=f"dynrec synth --preset {p.name}").save(
        folder / "frames"
    )
    Masks((parts >= 0) & (parts < scene.n_figure)).save(folder / "masks")
    Depth(np.stack([v.depth for v in views])).save(folder / "depth")
    Cameras(np.repeat(scene.K[None], p.frames, 0), w2c, p.width, p.height, method="gt").save(
        folder / "cameras"
    )
    Keypoints(kp.xy, kp.visible.astype(np.float32), kp.skeleton, kp.names, kp.xyz).save(
        folder / "keypoints"
    )
    save_npz(folder / "parts.npz", {"part_map": parts.astype(np.uint8)}, PART_MAP_SPEC)


def _scene_info(
    scene: Scene,
    seed: int,
    heldout: list[str],
    kp: KeypointTruth,
    speeds: np.ndarray,
    track_part: np.ndarray,
) -> dict[str, Any]:
    """The contents of ``scene.json``; ``speeds`` [J] peak keypoint speeds, ``track_part`` [N]."""
    cfg = scene.preset
    fast = int(np.argmax(speeds))
    n_fg = int((track_part < scene.n_figure).sum())
    return {
        "format": FORMAT,
        "preset": cfg.name,
        "seed": int(seed),
        "fps": float(cfg.fps),
        "width": cfg.width,
        "height": cfg.height,
        "frames": cfg.frames,
        "video": "video.mp4",
        "heldout": heldout,
        "parts": scene.part_names,
        "foreground_parts": scene.figure.names,
        "background_parts": scene.part_names[scene.n_figure :],
        "keypoints": kp.names,
        "skeleton": kp.skeleton.tolist(),
        "fast_keypoint": kp.names[fast],
        "max_joint_speed_px": round(float(speeds[fast]), 4),
        "joint_speed_px": {n: round(float(s), 4) for n, s in zip(kp.names, speeds, strict=True)},
        "tracks": {
            "count": len(track_part),
            "foreground": n_fg,
            "background": len(track_part) - n_fg,
        },
        "units": "metres",
        "world_up": [0.0, 0.0, 1.0],
    }


def generate(
    out: Path,
    preset: str = "tiny",
    seed: int = 0,
    progress: Progress | None = None,
    family: str = "sway",
    camera: str = "orbit",
) -> dict[str, Any]:
    """Render the ``preset`` scene of ``family`` seen by camera rig ``camera`` for ``seed`` into
    ``out`` (new or empty); return ``scene.json``.

    ``progress(done, total)`` is called after every rendered frame (training and held-out).
    The same arguments always give identical arrays.
    """
    cfg = _preset(preset)
    if family not in FAMILY_NAMES:
        raise DynrecError(f"unknown scene family '{family}'; known families: {', '.join(FAMILY_NAMES)}")
    if camera not in RIGS:
        raise DynrecError(f"unknown camera rig '{camera}'; known rigs: {', '.join(RIGS)}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DynrecError(f"the seed must be a non-negative integer, got {seed!r}")
    out = _prepare_output(Path(out))
    scene = build_scene(cfg, seed, family, camera)
    T = cfg.frames
    total = T * (1 + cfg.heldout)
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    train = _render_all(scene, scene.train_w2c, tick)
    heldout_w2c = [np.repeat(w[None], T, 0) for w in scene.heldout_w2c]
    heldout = [_render_all(scene, w2c, tick) for w2c in heldout_w2c]

    part_maps = np.stack([v.part for v in train])
    points = sample_points(scene, part_maps, np.random.default_rng([seed, 1]))
    tracks = track_truth(scene, points, part_maps)
    kp = keypoint_truth(scene, scene.train_w2c)
    speeds = keypoint_speeds(kp.xy, kp.visible)
    if family == "sway" and camera == "orbit" and speeds.max() < cfg.min_speed_px:
        raise RuntimeError(
            f"preset '{cfg.name}' promises a keypoint at {cfg.min_speed_px} px/frame,"
            f" got {speeds.max():.2f}"
        )

    gt = out / "gt"
    _write_view(gt, scene, train, scene.train_w2c, kp)
    Tracks(
        tracks.xy, tracks.visible, tracks.visible.astype(np.float32), tracks.query_frame, tracks.xyz
    ).save(gt / "tracks")
    save_npz(gt / "track_parts.npz", {"track_part": tracks.part.astype(np.int32)}, TRACK_PART_SPEC)
    names = [f"cam{i}" for i in range(cfg.heldout)]
    for name, views, w2c in zip(names, heldout, heldout_w2c, strict=True):
        _write_view(out / "heldout" / name, scene, views, w2c, keypoint_truth(scene, w2c))
    write_video(out / "video.mp4", np.stack([v.rgb for v in train]), cfg.fps)

    info = _scene_info(scene, seed, names, kp, speeds, tracks.part)
    info["family"], info["camera"] = family, camera
    save_json(out / "scene.json", info)
    return info
