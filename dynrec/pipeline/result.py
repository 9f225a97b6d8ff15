"""A finished reconstruction, loaded for the commands that look at it or take it elsewhere
(``dynrec render``, ``dynrec export``, ``dynrec view``).

Everything is in the model's world and the frames the ``frames`` stage kept (conventions in
:mod:`dynrec.geometry.camera`): ``T`` frames of ``width`` x ``height`` pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

from dynrec.artifacts import Cameras, Frames, Keypoints, Tracks
from dynrec.errors import DynrecError
from dynrec.model.restore import load_scene
from dynrec.model.scene import DynamicScene
from dynrec.pipeline.runner import Runner
from dynrec.pipeline.session import open_runner


@dataclass
class Reconstruction:
    """The trained ``scene`` and what it was trained on.

    ``K`` [T, 3, 3] and ``w2c`` [T, 4, 4] the training cameras (``recon/cameras`` when the
    reconstruction refined them, else the ``cameras`` stage; ``camera_source`` says which),
    ``fps`` and ``source_index`` [T] of the kept frames, ``tracks`` the model's 3D
    trajectories of the lifted tracks (``recon/tracks``: ``xyz`` [N, T, 3]) and
    ``keypoints`` its keypoints (``recon/keypoints``: ``xyz`` [T, J, 3], skeleton), each None
    when the reconstruction has none.
    """

    root: Path
    runner: Runner
    scene: DynamicScene
    K: np.ndarray
    w2c: np.ndarray
    width: int
    height: int
    fps: float
    source_index: np.ndarray
    camera_source: str
    tracks: Tracks | None
    keypoints: Keypoints | None

    @property
    def T(self) -> int:
        return len(self.w2c)

    @property
    def device(self) -> torch.device:
        return self.scene.gaussians.means.device

    def frames(self) -> Frames:
        """The input video's kept frames (images [T, H, W, 3] uint8)."""
        return Frames.load(self.root / "frames")

    def foreground_centre(self) -> np.ndarray:
        """[3] mean of the foreground Gaussians over every frame (the scene's centre without
        a foreground); what orbits and spirals look at."""
        g = self.scene.gaussians
        fg = g.foreground
        if not bool(fg.any()):
            return g.means.detach().mean(0).cpu().double().numpy()
        with torch.no_grad():
            means, _ = self.scene.deform_foreground(torch.arange(self.T, device=self.device))
        return means.mean((0, 1)).cpu().double().numpy()


def load_reconstruction(work: Path, device: str | torch.device = "cpu", console: Console | None = None) -> Reconstruction:
    """The finished reconstruction of work dir ``work``.

    Raises:
        DynrecError: not a work dir, or no finished reconstruction (the message names the
            command that makes one); artifacts that disagree name the file.
    """
    runner = open_runner(work, create=False, save=False, console=console)
    root = runner.work.root
    state = runner.state("recon")
    if state.state in ("missing", "failed"):
        what = "no reconstruction" if state.state == "missing" else f"the reconstruction failed ({state.detail})"
        raise DynrecError(f"{root}: {what}; make one with `dynrec reconstruct {root}`")
    if state.state == "stale" and console is not None:
        console.print(f"[yellow]note:[/] the reconstruction in {root} is stale ({state.detail}); "
                      f"showing it anyway (`dynrec reconstruct {root}` brings it up to date)")
    recon = runner.work.stage_dir("recon")
    scene = load_scene(recon, device)
    meta = Frames.load_meta(runner.work.stage_dir("frames"))
    T = int(meta["count"])
    refined = recon / "cameras"
    folder = refined if (refined / Cameras.FILE).is_file() else runner.work.stage_dir("cameras")
    cams = Cameras.load(folder)
    if len(cams.w2c) != T:
        raise DynrecError(f"{folder / Cameras.FILE}: {len(cams.w2c)} cameras but {T} frames; "
                          f"re-run `dynrec reconstruct {root}`")
    if scene.motion.num_frames != T:
        raise DynrecError(f"{recon / 'model.pt'}: the motion has {scene.motion.num_frames} frames but the video "
                          f"has {T}; re-run `dynrec reconstruct {root}`")
    tracks = Tracks.load(recon / "tracks") if (recon / "tracks" / Tracks.FILE).is_file() else None
    keypoints = Keypoints.load(recon / "keypoints") if (recon / "keypoints" / Keypoints.FILE).is_file() else None
    return Reconstruction(root, runner, scene, cams.K.astype(np.float64), cams.w2c.astype(np.float64),
                          int(meta["width"]), int(meta["height"]), float(meta["fps"]),
                          np.asarray(meta["source_index"], np.int64), str(folder.relative_to(root)),
                          tracks, keypoints)
