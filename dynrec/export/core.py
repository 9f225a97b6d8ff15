"""``dynrec export WORK --format ply|splat|dynamic|cameras|tracks|all -o DIR``.

Each format goes into its own folder of ``DIR`` (``ply/frame_00000.ply``,
``splat/frame_00000.splat``, ``dynamic/canonical.ply`` + ``motion.npz``,
``cameras/transforms.json`` + ``trajectory.tum.txt`` + ``images/``, ``tracks/tracks.npz`` +
CSV), built in a temporary folder and swapped into
place when complete, so a failed export leaves an earlier one as it was.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from dynrec.artifacts.base import replacing_folder
from dynrec.artifacts.types import write_pngs
from dynrec.choices import parse_choices
from dynrec.errors import DynrecError
from dynrec.export.cameras import transforms_json, write_transforms, write_tum
from dynrec.export.dynamic import write_dynamic
from dynrec.export.gaussians import check_sh_degree, write_ply, write_splat
from dynrec.export.tracks import write_tracks
from dynrec.pipeline.result import Reconstruction

FORMATS = ("ply", "splat", "dynamic", "cameras", "tracks")

#: ``progress(description, done, total)``.
ProgressFn = Callable[[str, int, int], None]


def parse_formats(spec: str) -> list[str]:
    """``"ply,cameras"`` -> ``["ply", "cameras"]``; ``"all"`` -> every format."""
    return parse_choices(spec, FORMATS, "--format", "format")


def check_output_dir(out: Path) -> None:
    """``out`` must be a folder or not exist yet."""
    if out.exists() and not out.is_dir():
        raise DynrecError(f"output path {out} is a file, not a folder; choose another with -o")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise DynrecError(f"output path {out}: {parent} is a file, not a folder; choose another with -o")
            break


def _no_progress(description: str, done: int, total: int) -> None:
    return None


def export(rec: Reconstruction, formats: list[str], out: Path, times: list[int], sh_degree: int = 0,
           progress: ProgressFn = _no_progress) -> dict[str, list[Path]]:
    """Write ``formats`` of ``rec`` into ``out/<format>/``; Gaussians at frames ``times``.
    Returns the files written per format (folders for image sets). Nothing is written when
    ``sh_degree`` or ``out`` is wrong."""
    check_sh_degree(sh_degree)
    check_output_dir(out)
    written: dict[str, list[Path]] = {}
    for fmt in formats:
        with replacing_folder(out / fmt) as tmp:
            files = _WRITERS[fmt](rec, tmp, times, sh_degree, progress)
        written[fmt] = [out / fmt / f.relative_to(tmp) for f in files]
    return written


def _gaussians(ext: str) -> Callable[..., list[Path]]:
    """The writer of one Gaussian file per frame (``frame_<t>.<ext>``)."""
    def run(rec: Reconstruction, folder: Path, times: list[int], sh_degree: int,
            progress: ProgressFn) -> list[Path]:
        files = []
        for i, t in enumerate(times):
            progress(f"export {ext}", i, len(times))
            path = folder / f"frame_{t:05d}.{ext}"
            snap = rec.scene.snapshot(t)
            if ext == "ply":
                write_ply(path, snap, sh_degree)
            else:
                write_splat(path, snap)
            files.append(path)
        return files
    return run


def _dynamic(rec: Reconstruction, folder: Path, times: list[int], sh_degree: int,
             progress: ProgressFn) -> list[Path]:
    """The canonical Gaussians and the motion at ``times`` (:mod:`dynrec.export.dynamic`)."""
    progress("export dynamic", 0, 1)
    return write_dynamic(folder, rec.scene, times, rec.fps, sh_degree)


def _cameras(rec: Reconstruction, folder: Path, times: list[int], sh_degree: int,
             progress: ProgressFn) -> list[Path]:
    """Every kept frame's camera (``times`` does not apply: a camera file describes the video)."""
    progress("export cameras", 0, 1)
    ts = list(range(rec.T))
    images = folder / "images"
    names = [f"images/{n}" for n in write_pngs(images, rec.frames().images, "frame_{:05d}.png")]
    obj = transforms_json(rec.K, rec.w2c, rec.width, rec.height, ts, rec.source_index, rec.fps, names)
    obj["dynrec"]["cameras"] = rec.camera_source
    write_transforms(folder / "transforms.json", obj)
    write_tum(folder / "trajectory.tum.txt", rec.w2c, np.arange(rec.T) / rec.fps)
    return [folder / "transforms.json", folder / "trajectory.tum.txt", images]


def _tracks(rec: Reconstruction, folder: Path, times: list[int], sh_degree: int,
            progress: ProgressFn) -> list[Path]:
    progress("export tracks", 0, 1)
    has_tracks = rec.tracks is not None and rec.tracks.xyz is not None
    has_keypoints = rec.keypoints is not None and rec.keypoints.xyz is not None
    if not has_tracks and not has_keypoints:
        raise DynrecError(f"{rec.root / 'recon'}: the reconstruction has no 3D tracks or keypoints to export; "
                          f"re-run `dynrec reconstruct {rec.root} --force`")
    return write_tracks(folder, rec.tracks, rec.keypoints, rec.fps)


_WRITERS: dict[str, Callable[..., list[Path]]] = {
    "ply": _gaussians("ply"), "splat": _gaussians("splat"), "dynamic": _dynamic,
    "cameras": _cameras, "tracks": _tracks,
}
