"""3D trajectories of the reconstruction's tracked points and keypoints as npz and CSV.

``tracks.npz``: ``xyz`` [N, T, 3] world positions of the lifted tracks at every kept frame
(the model's motion, ``recon/tracks``), ``visible`` [N, T] where the input video saw them,
``time`` [T] frame indices, ``timestamp`` [T] seconds; with keypoints also
``keypoints_xyz`` [T, J, 3], ``keypoint_names`` [J], ``skeleton`` [E, 2].
``tracks.csv``: ``track,frame,timestamp,x,y,z,visible``; ``keypoints.csv``:
``keypoint,name,frame,timestamp,x,y,z``. World units and axes are the reconstruction's
(those of ``transforms.json``).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from dynrec.artifacts import Keypoints, Tracks


def write_tracks(folder: Path, tracks: Tracks | None, keypoints: Keypoints | None, fps: float) -> list[Path]:
    """Write what exists of ``tracks`` (``xyz`` required) and ``keypoints`` (``xyz`` required)."""
    arrays: dict[str, np.ndarray] = {}
    written: list[Path] = []
    T = None
    if tracks is not None and tracks.xyz is not None:
        N, T = tracks.xyz.shape[:2]
        arrays |= {"xyz": tracks.xyz.astype(np.float32), "visible": tracks.visible.astype(bool)}
        track, frame = np.meshgrid(np.arange(N), np.arange(T), indexing="ij")
        table = np.column_stack([track.ravel(), frame.ravel(), frame.ravel() / fps, tracks.xyz.reshape(-1, 3),
                                 tracks.visible.ravel().astype(int)])
        path = folder / "tracks.csv"
        np.savetxt(path, table, delimiter=",", header="track,frame,timestamp,x,y,z,visible", comments="",
                   fmt=["%d", "%d", "%.6f", "%.7g", "%.7g", "%.7g", "%d"])
        written.append(path)
    if keypoints is not None and keypoints.xyz is not None:
        T, J = keypoints.xyz.shape[:2]
        names = keypoints.names or [f"k{j}" for j in range(J)]
        arrays |= {"keypoints_xyz": keypoints.xyz.astype(np.float32), "keypoint_names": np.array(names, dtype=str),
                   "skeleton": np.asarray(keypoints.skeleton, np.int32).reshape(-1, 2)}
        path = folder / "keypoints.csv"
        with path.open("w", newline="") as f:
            out = csv.writer(f)
            out.writerow(["keypoint", "name", "frame", "timestamp", "x", "y", "z"])
            for t in range(T):
                for j in range(J):
                    out.writerow([j, names[j], t, f"{t / fps:.6f}", *(f"{v:.7g}" for v in keypoints.xyz[t, j])])
        written.append(path)
    if arrays:
        assert T is not None
        arrays |= {"time": np.arange(T), "timestamp": np.arange(T) / fps}
        path = folder / "tracks.npz"
        np.savez_compressed(path, **arrays)
        written.insert(0, path)
    return written
