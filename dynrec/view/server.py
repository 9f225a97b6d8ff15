"""The viser viewer of a reconstruction: Gaussians at the current time (viser's Gaussian
splats), a time slider with play / pause, the training cameras as frusta with their frames,
the model's 3D tracks and keypoint skeleton, foreground / background toggles, and a button
that renders the current viewpoint over every frame with ``dynrec render``'s code.

viser's cameras and frusta follow OpenCV's axes (x right, y down, z forward), as dynrec does
(:mod:`dynrec.geometry.camera`), so poses pass through unchanged.
"""

from __future__ import annotations

import errno
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import viser
from rich.console import Console
from scipy.spatial.transform import Rotation

from dynrec.errors import DynrecError
from dynrec.export.render import Shot, render
from dynrec.model.scene import Snapshot
from dynrec.pipeline.result import Reconstruction
from dynrec.render.paths import CameraPath, camera_up

#: At most this many training cameras are drawn (evenly spaced over the video).
MAX_FRUSTA = 30
#: At most this many tracks are drawn, each with this many frames of trail.
MAX_TRACKS = 300
TRAIL = 8


def check_port(host: str, port: int) -> None:
    """Raise a :class:`DynrecError` that suggests ``--port`` when ``host:port`` is taken
    (viser itself would quietly move to the next free port)."""
    if not 0 < port < 65536:
        raise DynrecError(f"--port must be 1..65535, got {port}")
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise DynrecError(f"port {port} on {host} is already in use (another viewer?); "
                                  f"choose another with --port, e.g. --port {port + 1}") from None
            raise DynrecError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None


def covariances(snap: Snapshot) -> np.ndarray:
    """[G, 3, 3] world covariances ``R diag(s^2) R^T`` of a snapshot (unit wxyz quats)."""
    q = snap.quats.detach().cpu().double().numpy()
    R = Rotation.from_quat(q[:, [1, 2, 3, 0]]).as_matrix()
    s = snap.scales.detach().cpu().double().numpy()
    return np.einsum("gij,gj,gkj->gik", R, s**2, R)


def matrix_wxyz(R: np.ndarray) -> np.ndarray:
    """[4] the wxyz unit quaternion of a rotation matrix ``R`` [3, 3]."""
    x, y, z, w = Rotation.from_matrix(R).as_quat()
    return np.array([w, x, y, z])


@dataclass
class ViewCamera:
    """A viewpoint: camera-to-world ``wxyz`` [4] and ``position`` [3] (OpenCV axes), vertical
    field of view ``fov`` (radians) and ``aspect`` (width / height), as viser's client camera."""

    wxyz: np.ndarray
    position: np.ndarray
    fov: float
    aspect: float


class Viewer:
    """The viewer's scene and controls on a running ``server``; :meth:`set_time` shows a frame."""

    def __init__(self, rec: Reconstruction, server: viser.ViserServer, console: Console | None = None):
        self.rec, self.server, self.console = rec, server, console or Console(stderr=True)
        self.time = 0
        self._lock = threading.Lock()
        self._fg = rec.scene.gaussians.foreground.cpu().numpy()
        centres = np.linalg.inv(rec.w2c)[:, :3, 3]
        self.centre = rec.foreground_centre()
        self.extent = float(np.median(np.linalg.norm(centres - self.centre, axis=1))) or 1.0
        up = camera_up(rec.w2c)
        server.scene.set_up_direction(tuple(up))
        # behind and above the first training camera, so the training frusta do not fill the view
        server.initial_camera.position = tuple(self.centre + 1.8 * (centres[0] - self.centre) + 0.5 * self.extent * up)
        server.initial_camera.look_at = tuple(self.centre)
        snap = rec.scene.snapshot(0)
        self.splats = {part: self._add_splats(f"/gaussians/{part}", snap, keep)
                       for part, keep in (("background", ~self._fg), ("foreground", self._fg))}
        self._add_cameras(centres)
        self.tracks = self._add_lines("/tracks", self._track_segments(0))
        self.skeleton = self._add_lines("/skeleton", self._skeleton_segments(0))
        self._add_gui()

    # ----- scene ----------------------------------------------------------------------------
    def _arrays(self, snap: Snapshot, keep: np.ndarray) -> tuple[np.ndarray, ...]:
        part = snap.select(snap.foreground.new_tensor(keep))
        return (part.means.cpu().numpy().astype(np.float32), covariances(part).astype(np.float32),
                part.colors.cpu().numpy().astype(np.float32),
                part.opacities.cpu().numpy().astype(np.float32)[:, None])

    def _add_splats(self, name: str, snap: Snapshot, keep: np.ndarray) -> Any:
        centers, covs, rgbs, opacities = self._arrays(snap, keep)
        return self.server.scene.add_gaussian_splats(name, centers=centers, covariances=covs, rgbs=rgbs,
                                                     opacities=opacities)

    def _add_cameras(self, centres: np.ndarray) -> None:
        rec = self.rec
        try:
            images = rec.frames().images
        except DynrecError:
            images = None
        picks = np.unique(np.linspace(0, rec.T - 1, min(rec.T, MAX_FRUSTA)).round().astype(int))
        c2w = np.linalg.inv(rec.w2c)
        scale = 0.08 * self.extent
        self.frusta: list[Any] = []
        for t in picks:
            fy = rec.K[t, 1, 1]
            image = None
            if images is not None:
                s = min(1.0, 160 / max(rec.width, rec.height))
                image = cv2.resize(images[t], (max(1, round(rec.width * s)), max(1, round(rec.height * s))),
                                   interpolation=cv2.INTER_AREA)
            self.frusta.append(self.server.scene.add_camera_frustum(
                f"/cameras/frame_{t:05d}", fov=float(2 * np.arctan(rec.height / (2 * fy))),
                aspect=rec.width / rec.height, scale=scale, image=image, wxyz=matrix_wxyz(c2w[t, :3, :3]),
                position=centres[t], color=(60, 120, 220)))

    def _track_segments(self, t: int) -> np.ndarray:
        """[S, 2, 3] trail segments of the tracks up to frame ``t``."""
        tracks = self.rec.tracks
        if tracks is None or tracks.xyz is None or t == 0:
            return np.zeros((0, 2, 3), np.float32)
        step = max(1, len(tracks.xyz) // MAX_TRACKS)
        xyz = tracks.xyz[::step, max(0, t - TRAIL):t + 1]
        return np.stack([xyz[:, :-1], xyz[:, 1:]], axis=2).reshape(-1, 2, 3).astype(np.float32)

    def _skeleton_segments(self, t: int) -> np.ndarray:
        """[E, 2, 3] skeleton bones at frame ``t``."""
        kp = self.rec.keypoints
        if kp is None or kp.xyz is None:
            return np.zeros((0, 2, 3), np.float32)
        edges = np.asarray(kp.skeleton, int).reshape(-1, 2)
        return kp.xyz[t][edges].astype(np.float32)

    def _add_lines(self, name: str, segments: np.ndarray) -> Any:
        colours = np.broadcast_to(np.array([255, 190, 40], np.uint8), segments.shape).copy()
        if "skeleton" in name:
            colours[:] = (255, 255, 255)
        return self.server.scene.add_line_segments(name, points=segments, colors=colours, thickness=2.0,
                                                   thickness_units="screen")

    def set_time(self, t: int) -> None:
        """Show frame ``t``: the foreground deformed to it, tracks and skeleton at it."""
        if not 0 <= t < self.rec.T:
            raise DynrecError(f"time {t} is outside the video, which has frames 0..{self.rec.T - 1}")
        with self._lock:
            snap = self.rec.scene.snapshot(t)
            centers, covs, rgbs, opacities = self._arrays(snap, self._fg)
            self.splats["foreground"].set_gaussians(centers, covs, rgbs, opacities)
            visible = {"tracks": self.tracks.visible, "skeleton": self.skeleton.visible}
            self.tracks.remove()
            self.skeleton.remove()
            self.tracks = self._add_lines("/tracks", self._track_segments(t))
            self.skeleton = self._add_lines("/skeleton", self._skeleton_segments(t))
            self.tracks.visible, self.skeleton.visible = visible["tracks"], visible["skeleton"]
            self.time = t

    # ----- controls -------------------------------------------------------------------------
    def _add_gui(self) -> None:
        gui = self.server.gui
        rec = self.rec
        self.slider = gui.add_slider("time", min=0, max=max(rec.T - 1, 1), step=1, initial_value=0,
                                     disabled=rec.T < 2)
        self.playing = gui.add_checkbox("play", initial_value=False)
        self.fps = gui.add_slider("fps", min=1, max=60, step=1, initial_value=round(min(max(rec.fps, 1), 60)))
        toggles = {"foreground": [self.splats["foreground"]], "background": [self.splats["background"]]}
        self.toggles = {name: gui.add_checkbox(name, initial_value=True) for name in toggles}
        self.toggles["cameras"] = gui.add_checkbox("cameras", initial_value=True)
        self.toggles["tracks"] = gui.add_checkbox("tracks", initial_value=True, disabled=rec.tracks is None)
        self.toggles["skeleton"] = gui.add_checkbox("skeleton", initial_value=True, disabled=rec.keypoints is None)
        self.button = gui.add_button("render this view (all frames)")
        self.status = gui.add_markdown("")

        @self.slider.on_update
        def _(_: Any) -> None:
            self.set_time(int(self.slider.value))

        for name, checkbox in self.toggles.items():
            checkbox.on_update(lambda _, n=name: self.show(n, bool(self.toggles[n].value)))

        @self.button.on_click
        def _(event: Any) -> None:
            client = event.client
            if client is None:
                return
            cam = client.camera
            self.button.disabled = True
            self.status.content = "rendering..."
            try:
                folder = self.render_view(ViewCamera(np.asarray(cam.wxyz), np.asarray(cam.position),
                                                     float(cam.fov), float(cam.aspect)))
                self.status.content = f"rendered: `{folder}`"
            except DynrecError as exc:
                self.status.content = f"render failed: {exc}"
            finally:
                self.button.disabled = False

    def show(self, part: str, visible: bool) -> None:
        """Show or hide ``foreground``, ``background``, ``cameras``, ``tracks``, ``skeleton``."""
        if part in self.splats:
            self.splats[part].visible = visible
        elif part == "tracks":
            self.tracks.visible = visible
        elif part == "skeleton":
            self.skeleton.visible = visible
        elif part == "cameras":
            for handle in self.frusta:
                handle.visible = visible
        else:
            raise ValueError(f"unknown part {part!r}")

    def tick(self) -> None:
        """Advance one frame when playing (called by :func:`serve` at the chosen fps)."""
        if self.playing.value and self.rec.T > 1:
            self.slider.value = (int(self.slider.value) + 1) % self.rec.T

    def render_view(self, camera: ViewCamera) -> Path:
        """Render ``camera`` (the video's height, the camera's aspect) over every frame into
        ``WORK/renders/view-NNN/`` with ``dynrec render``'s code; returns the folder."""
        rec = self.rec
        H = rec.height
        W = max(2, round(H * camera.aspect))
        fy = H / (2 * np.tan(camera.fov / 2))
        K = np.array([[fy, 0, W / 2], [0, fy, H / 2], [0, 0, 1.0]])
        c2w = np.eye(4)
        c2w[:3, :3] = Rotation.from_quat(np.asarray(camera.wxyz)[[1, 2, 3, 0]]).as_matrix()
        c2w[:3, 3] = camera.position
        T = rec.T
        path = CameraPath(np.repeat(K[None], T, 0), np.repeat(np.linalg.inv(c2w)[None], T, 0), W, H)
        base = rec.root / "renders"
        n = 1
        while (base / f"view-{n:03d}").exists():
            n += 1
        folder = render(rec, [Shot(f"view-{n:03d}", path, list(range(T)))])[0]
        self.console.print(f"[green]✓[/] rendered the current view: {folder}/rgb.mp4", highlight=False)
        return folder


def serve(rec: Reconstruction, host: str = "127.0.0.1", port: int = 8080, console: Console | None = None,
          ready: threading.Event | None = None, stop: threading.Event | None = None) -> None:
    """Serve the viewer until Ctrl-C (or ``stop`` is set); prints the URL. ``ready`` is set
    once it serves."""
    console = console or Console(stderr=True)
    check_port(host, port)
    server = viser.ViserServer(host=host, port=port, verbose=False)
    try:
        viewer = Viewer(rec, server, console)
        shown = "localhost" if host in ("127.0.0.1", "localhost", "::1") else host
        console.print(f"[green]viewer[/] of {rec.root}: [bold]http://{shown}:{server.get_port()}[/] "
                      f"({rec.T} frames, {len(rec.scene.gaussians)} Gaussians); Ctrl-C stops it",
                      highlight=False, soft_wrap=True)
        if host in ("0.0.0.0", "::"):
            console.print("[yellow]note:[/] serving on every network interface", highlight=False)
        if ready is not None:
            ready.set()
        while stop is None or not stop.is_set():
            viewer.tick()
            time.sleep(1.0 / max(float(viewer.fps.value), 1.0))
    finally:
        server.stop()
