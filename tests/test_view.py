"""`dynrec view`: the viser viewer serves the page, its time control deforms the Gaussians,
its toggles hide parts, its render button renders the current view with `dynrec render`'s
code; as a command it prints the URL, stops on Ctrl-C and names a port in use."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import dynrec
from dynrec.artifacts import Frames
from dynrec.geometry.camera import look_at
from dynrec.pipeline.result import load_reconstruction
from dynrec.render.paths import camera_up

viser = pytest.importorskip("viser")

from dynrec.view.server import ViewCamera, Viewer, matrix_wxyz, serve


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, timeout: float = 60.0) -> bytes:
    """GET ``url``, retrying until it answers or ``timeout`` seconds pass."""
    end = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.read()
        except OSError:
            if time.monotonic() > end:
                raise
            time.sleep(0.3)


@pytest.fixture
def work(trained_work: Path, tmp_path: Path) -> Path:
    out = tmp_path / "work"
    shutil.copytree(trained_work, out)
    return out


def test_viewer_scene_time_toggles_and_render_button(work):
    rec = load_reconstruction(work)
    port = free_port()
    server = viser.ViserServer(host="127.0.0.1", port=port, verbose=False)
    try:
        assert b"<!doctype html>" in get(f"http://127.0.0.1:{port}/").lower()
        viewer = Viewer(rec, server)
        fg = rec.scene.gaussians.foreground.numpy()
        splats = viewer.splats["foreground"]
        assert len(splats.centers) == fg.sum() and len(viewer.splats["background"].centers) == (~fg).sum()
        at0 = np.array(splats.centers)
        viewer.slider.value = 8  # as the browser's slider does: the callback shows frame 8
        assert viewer.time == 8
        np.testing.assert_allclose(splats.centers, rec.scene.snapshot(8).means[fg].numpy(), atol=1e-6)
        assert np.abs(np.array(splats.centers) - at0).max() > 1e-3
        assert len(viewer.frusta) == 16 and len(viewer.skeleton.points) > 0 and len(viewer.tracks.points) > 0
        viewer.toggles["foreground"].value = False
        viewer.toggles["cameras"].value = False
        assert not splats.visible and viewer.splats["background"].visible
        assert not any(f.visible for f in viewer.frusta)
        viewer.toggles["tracks"].value = False
        viewer.set_time(3)
        assert not viewer.tracks.visible and viewer.skeleton.visible
        # the render button's work: the viewpoint of training camera 3 over every frame gives
        # the training render at frame 3 (the tiny scene's cameras have fx = fy, centred)
        K = rec.K[3]
        assert K[0, 0] == K[1, 1] and (K[0, 2], K[1, 2]) == (rec.width / 2, rec.height / 2)
        c2w = np.linalg.inv(rec.w2c[3])
        camera = ViewCamera(matrix_wxyz(c2w[:3, :3]), c2w[:3, 3], float(2 * np.arctan(rec.height / (2 * K[1, 1]))),
                            rec.width / rec.height)
        folder = viewer.render_view(camera)
        assert folder == work / "renders" / "view-001"
        frames = sorted((folder / "rgb").glob("*.png"))
        assert len(frames) == 16
        train = Frames.load(work / "recon" / "renders" / "train").images
        np.testing.assert_array_equal(np.asarray(Image.open(frames[3])), train[3])
    finally:
        server.stop()


def test_view_command_serves_and_stops_on_ctrl_c(work):
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(Path(dynrec.__file__).parents[1]), OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "dynrec", "view", str(work), "--host", "127.0.0.1",
                             "--port", str(port), "--device", "cpu"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)  # type: ignore[arg-type]
    reader.start()
    try:
        end = time.monotonic() + 90
        while not any("Ctrl-C" in line for line in lines) and time.monotonic() < end and proc.poll() is None:
            time.sleep(0.2)
        page = get(f"http://127.0.0.1:{port}/", timeout=10)
        assert b"<!doctype html>" in page.lower()
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        reader.join(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out = "".join(lines)
    assert proc.returncode == 0, out
    assert f"http://localhost:{port}" in out and "Ctrl-C" in out and "viewer stopped" in out


def test_view_names_a_port_in_use_and_a_missing_reconstruction(cli, work, gt_work):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = cli("view", work, "--port", port)
    assert r.code == 1 and f"port {port}" in r.err and "in use" in r.err and "--port" in r.err
    r = cli("view", gt_work, "--port", free_port())
    assert r.code == 1 and "no reconstruction" in r.err and "dynrec reconstruct" in r.err


needs_chromium = pytest.mark.skipif(
    shutil.which("chromium") is None,
    reason="no headless browser: Debian's `chromium` is not installed (apt-get install chromium)")

CHROMIUM = ["chromium", "--headless", "--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
            "--window-size=640,480"]


@needs_chromium
def test_viewer_in_a_real_browser(work, tmp_path):
    """``serve`` (the command's server) answers a headless Chromium whose screenshot of the page
    shows the scene."""
    rec = load_reconstruction(work)
    port = free_port()
    ready, stop = threading.Event(), threading.Event()
    thread = threading.Thread(target=serve, args=(rec, "127.0.0.1", port), kwargs={"ready": ready, "stop": stop})
    thread.start()
    try:
        assert ready.wait(60)
        path = tmp_path / "page.png"
        subprocess.run([*CHROMIUM, "--virtual-time-budget=15000", f"--screenshot={path}", f"http://127.0.0.1:{port}/"],
                       check=True, timeout=120, capture_output=True)
        shot = np.asarray(Image.open(path).convert("RGB")).astype(int)
        assert (np.abs(shot - shot[-1, -1]).sum(-1) > 30).mean() > 0.01
    finally:
        stop.set()
        thread.join(30)


def camera_across_motion(rec, width: int, height: int) -> tuple[np.ndarray, np.ndarray, float]:
    """``(w2c [4, 4], K [3, 3], vertical fov)`` of a camera that looks at the foreground from
    the side of its motion between the first and the last frame, the foreground filling the view."""
    fg = rec.scene.gaussians.foreground.numpy()
    first, last = (rec.scene.snapshot(t).means[fg].numpy().astype(np.float64) for t in (0, rec.T - 1))
    up = camera_up(rec.w2c)
    move = last.mean(0) - first.mean(0)
    side = np.cross(move, up) / np.linalg.norm(np.cross(move, up))
    centre = (first.mean(0) + last.mean(0)) / 2
    radius = float(np.percentile(np.linalg.norm(np.concatenate([first, last]) - centre, axis=1), 95))
    w2c = look_at(centre + 4 * radius * side, centre, up)
    fov = float(2 * np.arctan(1.6 / 4))
    f = height / (2 * np.tan(fov / 2))
    return w2c, np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]]), fov


def covered_centroid(alpha: np.ndarray) -> np.ndarray:
    """[2] mean pixel (x, y) where ``alpha`` [H, W] (in 0..1) exceeds one half."""
    ys, xs = np.nonzero(alpha > 0.5)
    assert len(xs) > 0.01 * alpha.size, "the foreground covers (almost) nothing"
    return np.array([xs.mean(), ys.mean()])


class DevTools:
    """A page of headless Chromium driven over the DevTools protocol (the page Chromium
    opened at start, in ``profile``, with ``--remote-debugging-port=0``)."""

    def __init__(self, profile: Path, timeout: float = 60.0):
        from websockets.sync.client import connect  # viser's own dependency

        active = profile / "DevToolsActivePort"
        end = time.monotonic() + timeout
        while not active.is_file() or not active.read_text().strip():
            assert time.monotonic() < end, "Chromium did not open its DevTools port"
            time.sleep(0.1)
        port = int(active.read_text().split()[0])
        pages = json.loads(get(f"http://127.0.0.1:{port}/json/list", timeout=10))
        self.socket = connect(next(p for p in pages if p["type"] == "page")["webSocketDebuggerUrl"], max_size=None)
        self.calls = 0

    def call(self, method: str, **params: object) -> dict:
        self.calls += 1
        self.socket.send(json.dumps({"id": self.calls, "method": method, "params": params}))
        while True:  # events arrive between the answers
            message = json.loads(self.socket.recv(timeout=30))
            if message.get("id") == self.calls:
                assert "error" not in message, message
                return message["result"]

    def evaluate(self, expression: str) -> object:
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def press(self, key: str, code: int) -> None:
        for kind in ("keyDown", "keyUp"):
            self.call("Input.dispatchKeyEvent", type=kind, key=key, code=key, windowsVirtualKeyCode=code)


def wait_for(condition, timeout: float = 20.0) -> bool:
    """Poll ``condition()`` until it is true or ``timeout`` seconds pass; its last value."""
    end = time.monotonic() + timeout
    while not condition() and time.monotonic() < end:
        time.sleep(0.05)
    return bool(condition())


@needs_chromium
def test_time_slider_moves_the_scene_in_a_real_browser(work, tmp_path):
    """Headless Chromium draws the foreground where the time slider puts it.

    The time slider is moved in the browser (its thumb focused, the End key pressed, over the
    DevTools protocol): the server's slider follows and the browser then draws the last
    frame. The browser renders the viewer through viser's ``get_render`` (PNG, transparent
    where nothing is drawn) from a camera looking across the foreground's motion, with only
    the foreground shown. The statistic is the centroid of the covered pixels (alpha > 0.5);
    the alpha of a pixel does not depend on the splats' blending order, so the same time
    gives the same picture (software WebGL). The move must shift that centroid as dynrec's own
    renderer shifts it; setting the slider back on the server (its GUI handle's value) moves
    the browser's thumb and restores the picture."""
    rec = load_reconstruction(work)
    W, H = 320, 240
    w2c, K, fov = camera_across_motion(rec, W, H)
    c2w = np.linalg.inv(w2c)
    wxyz, position = matrix_wxyz(c2w[:3, :3]), c2w[:3, 3]

    def model_centroid(t: int) -> np.ndarray:
        snap = rec.scene.snapshot(t)
        keep = snap.foreground
        with torch.no_grad():
            _, alpha = rec.scene.render_features(snap.means[keep], snap.quats[keep], None,
                                                 torch.ones(int(keep.sum()), 1), torch.from_numpy(K).float(),
                                                 torch.from_numpy(w2c).float(), W, H)
        return covered_centroid(alpha[..., 0].numpy())

    port = free_port()
    server = viser.ViserServer(host="127.0.0.1", port=port, verbose=False)
    browser = page = None
    try:
        viewer = Viewer(rec, server)
        profile = tmp_path / "profile"
        browser = subprocess.Popen([*CHROMIUM, f"--user-data-dir={profile}", "--remote-debugging-port=0",
                                    f"http://127.0.0.1:{port}/"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert wait_for(server.get_clients, 60), "the page never connected"
        client = next(iter(server.get_clients().values()))
        with client.atomic():
            client.camera.fov, client.camera.wxyz, client.camera.position = fov, wxyz, position
        for part in ("background", "cameras", "tracks", "skeleton"):
            viewer.toggles[part].value = False

        def browser_centroid() -> np.ndarray:
            image = client.get_render(H, W, wxyz=wxyz, position=position, fov=fov, transport_format="png",
                                      timeout=60)
            return covered_centroid(image[..., 3] / 255.0)

        browser_centroid()  # the first frame after the camera moved may still use the old projection
        start = browser_centroid()
        time.sleep(1.0)
        assert np.abs(browser_centroid() - start).max() < 0.25  # the slider not moved: the picture stays
        page = DevTools(profile)
        thumb = "document.querySelector('[role=slider]')"  # the first slider: time
        assert wait_for(lambda: page.evaluate(f"{thumb} && {thumb}.getAttribute('aria-valuemax')") == str(rec.T - 1))
        assert page.evaluate(f"{thumb}.focus(), document.activeElement === {thumb}")
        page.press("End", 35)
        assert wait_for(lambda: viewer.slider.value == rec.T - 1), "the browser's slider did not reach the server"
        # the handle's value changes before its callback has deformed and sent the foreground
        assert wait_for(lambda: viewer.time == rec.T - 1), "the slider's callback did not show the last frame"
        moved = browser_centroid() - start
        expected = model_centroid(rec.T - 1) - model_centroid(0)
        assert np.linalg.norm(expected) > 8, "the fixture's foreground barely moves in this view"
        assert 0.5 < np.linalg.norm(moved) / np.linalg.norm(expected) < 2, (moved, expected)
        assert moved @ expected / (np.linalg.norm(moved) * np.linalg.norm(expected)) > 0.9, (moved, expected)
        viewer.slider.value = 0
        assert wait_for(lambda: page.evaluate(f"{thumb}.getAttribute('aria-valuenow')") == "0")
        assert np.abs(browser_centroid() - start).max() < 0.25
    finally:
        if page is not None:
            page.socket.close()
        if browser is not None:
            browser.terminate()
            try:
                browser.wait(10)
            except subprocess.TimeoutExpired:
                browser.kill()
                browser.wait()
        server.stop()
