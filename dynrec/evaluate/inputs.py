"""What ``evaluate`` reads: the work dir's artifacts and the ground truth, loaded on demand.

Every loader either returns its data or raises :class:`Unavailable` with a reason a user can
act on ("no reconstruction: run ...", "no ground truth: preprocess with --gt SCENE"); the
metric that needed it is then reported as *not computed: reason*. Inconsistent inputs
(frame counts or sizes that disagree between artifacts) are errors, not reasons: they raise
:class:`~dynrec.errors.DynrecError` naming the file.

Images are returned as float arrays ``[T, H, W, 3]`` in [0, 1]; all per-frame arrays follow
the frames the ``frames`` stage kept (``T`` frames, ``H x W`` pixels).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import cv2
import numpy as np

from dynrec.artifacts import Cameras, Depth, Frames, Keypoints, Lift, Masks, Tracks
from dynrec.datasets.scene import load_keypoint_valid_3d
from dynrec.errors import DynrecError
from dynrec.evaluate.covis import covisible_masks
from dynrec.model.restore import load_scene
from dynrec.model.scene import DynamicScene
from dynrec.pipeline.runner import Runner
from dynrec.stages.base import StageContext
from dynrec.stages.gt import frame_selection, load_gt

T_ = TypeVar("T_")

NO_GT = "no ground truth: preprocess with --gt SCENE (a `dynrec synth` scene or an imported dataset)"


class Unavailable(Exception):
    """An input a metric needs is not there; ``reason`` says why and what to do."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


@dataclass
class HeldoutView:
    """One held-out camera at the kept frames: ground truth ``gt`` [T, H, W, 3] in [0, 1],
    the model's ``render`` [T, H, W, 3] and ``render_depth`` [T, H, W] (None if not
    written), and the co-visibility mask ``covis`` [T, H, W] bool (None when it cannot be had:
    ``covis_reason`` says why; only the masked metrics need it)."""

    name: str
    gt: np.ndarray
    render: np.ndarray
    render_depth: np.ndarray | None
    covis: np.ndarray | None
    covis_reason: str = ""


def resize_images(images: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize ``[T, H, W, 3]`` uint8 images as the ``frames`` stage does (area averaging)."""
    if images.shape[1:3] == (height, width):
        return images
    return np.stack([cv2.resize(im, (width, height), interpolation=cv2.INTER_AREA) for im in images])


def _to_float(images: np.ndarray) -> np.ndarray:
    return images.astype(np.float32) / 255.0


class EvalInputs:
    """Lazy, cached access to everything the metrics need from ``runner``'s work dir.

    ``used`` collects ``{stage: {"key", "state"}}`` of the stages whose artifacts were read,
    for ``eval/metrics.json``.
    """

    def __init__(self, runner: Runner, prompt: str | None = None):
        self.runner = runner
        self.root = runner.work.root
        self.prompt = prompt
        self.used: dict[str, dict[str, str]] = {}
        self._cache: dict[str, Any] = {}

    # ----- caching ------------------------------------------------------------------------
    def memo(self, name: str, fn: Callable[[], T_]) -> T_:
        """``fn()`` once; an :class:`Unavailable` it raised is raised again on later calls."""
        if name not in self._cache:
            try:
                self._cache[name] = fn()
            except Unavailable as exc:
                self._cache[name] = exc
        value = self._cache[name]
        if isinstance(value, Unavailable):
            raise value
        return value

    # ----- work dir -----------------------------------------------------------------------
    def stage(self, name: str) -> Path:
        """The folder of a finished stage; :class:`Unavailable` when it is not done."""
        st = self.runner.state(name)
        if st.state != "done":
            detail = f" ({st.detail})" if st.detail else ""
            if name == "recon":
                what = {"missing": "no reconstruction", "failed": f"the reconstruction failed{detail}"}.get(
                    st.state, f"the reconstruction is {st.state}{detail}")
                raise Unavailable(f"{what}: run `dynrec reconstruct {self.root}`")
            raise Unavailable(f"stage '{name}' is {st.state}{detail}: run `dynrec preprocess -o {self.root}`")
        self.used[name] = {"key": st.key, "state": st.state}
        return self.runner.work.stage_dir(name)

    def frames(self) -> Frames:
        """The input video's kept frames (the ``frames`` stage); required by everything."""
        def load() -> Frames:
            try:
                folder = self.stage("frames")
            except Unavailable as exc:
                raise DynrecError(f"nothing to evaluate in {self.root}: {exc.reason}") from None
            return Frames.load(folder)
        return self.memo("frames", load)

    @property
    def T(self) -> int:
        return self.frames().shape[0]

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the kept frames."""
        _, h, w = self.frames().shape
        return w, h

    @property
    def source_index(self) -> np.ndarray:
        return self.frames().source_index

    def images(self) -> np.ndarray:
        """Input frames [T, H, W, 3] float in [0, 1]."""
        return self.memo("images", lambda: _to_float(self.frames().images))

    def _check_frames(self, frames: Frames, folder: Path, what: str) -> None:
        """Renders must have the kept frames' count, size and source indices."""
        T, H, W = self.frames().shape
        t, h, w = frames.shape
        where = folder / Frames.FILE
        if t != T:
            raise DynrecError(f"{where}: {what} has {t} frames but {self.root / 'frames'} has {T}; "
                              f"re-run `dynrec reconstruct {self.root}`")
        if (h, w) != (H, W):
            raise DynrecError(f"{where}: {what} is {w}x{h} but the frames are {W}x{H}")
        if not np.array_equal(frames.source_index, self.source_index):
            raise DynrecError(f"{where}: {what} is at other source frames than {self.root / 'frames'}")

    def _check_count(self, count: int, path: Path, what: str) -> None:
        if count != self.T:
            raise DynrecError(f"{path}: {what} has {count} frames but {self.root / 'frames'} has {self.T}")

    def renders(self) -> tuple[np.ndarray, np.ndarray | None]:
        """The model at the training cameras: images [T, H, W, 3] in [0, 1], depth [T, H, W]."""
        def load() -> tuple[np.ndarray, np.ndarray | None]:
            folder = self.stage("recon") / "renders" / "train"
            frames = Frames.load(folder)
            self._check_frames(frames, folder, "recon/renders/train")
            depth = Depth.load(folder).depth if (folder / Depth.FILE).is_file() else None
            if depth is not None:
                self._check_count(depth.shape[0], folder / Depth.FILE, "depth")
            return _to_float(frames.images), depth
        return self.memo("renders", load)

    def input_masks(self) -> np.ndarray:
        """Foreground masks [T, H, W] bool of the input video (the ``masks`` stage)."""
        def load() -> np.ndarray:
            folder = self.stage("masks")
            masks = Masks.load(folder).masks
            self._check_count(masks.shape[0], folder / Masks.FILE, "masks")
            return masks
        return self.memo("input_masks", load)

    def input_tracks(self) -> Tracks:
        """2D tracks of the input video (the ``tracks`` stage)."""
        def load() -> Tracks:
            folder = self.stage("tracks")
            tracks = Tracks.load(folder)
            self._check_count(tracks.xy.shape[1], folder / Tracks.FILE, "tracks")
            return tracks
        return self.memo("input_tracks", load)

    def lift(self) -> Lift:
        return self.memo("lift", lambda: Lift.load(self.stage("lift")))

    def recon_tracks(self) -> Tracks:
        """The model's trajectories of the lifted points: ``xy`` [N, T, 2] projected at the
        training cameras, ``xyz`` [N, T, 3]; row i is row ``lift.track_index[i]`` of the tracks."""
        def load() -> Tracks:
            folder = self.stage("recon") / "tracks"
            tracks = Tracks.load(folder)
            self._check_count(tracks.xy.shape[1], folder / Tracks.FILE, "recon/tracks")
            lift = self.lift()
            if len(lift.track_index) != tracks.xy.shape[0]:
                raise DynrecError(f"{folder / Tracks.FILE}: {tracks.xy.shape[0]} trajectories but "
                                  f"{self.root / 'lift'} lifted {len(lift.track_index)} tracks")
            return tracks
        return self.memo("recon_tracks", load)

    def recon_keypoints(self) -> Keypoints:
        """The model's keypoints (``recon/keypoints``: SirenPose anchors projected at the
        training cameras), ``xy`` [T, J, 2]."""
        def load() -> Keypoints:
            folder = self.stage("recon") / "keypoints"
            if not (folder / Keypoints.FILE).is_file():
                raise Unavailable(f"the reconstruction has no keypoints ({folder} not found): it needs the "
                                  "keypoints stage's output and recon.keypoints=true")
            kp = Keypoints.load(folder)
            self._check_count(kp.xy.shape[0], folder / Keypoints.FILE, "recon/keypoints")
            return kp
        return self.memo("recon_keypoints", load)

    def pred_cameras(self) -> tuple[Cameras, str]:
        """The cameras to evaluate and where they came from: ``recon/cameras`` (refined by the
        reconstruction) when present, else the ``cameras`` stage."""
        def load() -> tuple[Cameras, str]:
            try:
                folder = self.stage("recon") / "cameras"
            except Unavailable:
                folder = None
            if folder is None or not (folder / Cameras.FILE).is_file():
                folder = self.stage("cameras")
            cams = Cameras.load(folder)
            self._check_count(cams.w2c.shape[0], folder / Cameras.FILE, "cameras")
            return cams, str(folder.relative_to(self.root))
        return self.memo("pred_cameras", load)

    # ----- ground truth --------------------------------------------------------------------
    def gt_scene(self) -> Path:
        """The ground-truth scene recorded in ``WORK/dynrec.toml`` (``[input] gt``)."""
        gt = self.runner.gt
        if gt is None:
            raise Unavailable(NO_GT)
        if not (gt / "scene.json").is_file():
            raise Unavailable(f"ground truth missing: {gt} (from {self.runner.work.config_file}) "
                              "is not a ground-truth scene (no scene.json)")
        return gt

    def _gt_ctx(self) -> StageContext:
        return StageContext(work=self.root, out=self.root, inputs={"frames": self.root / "frames"},
                            gt=self.gt_scene())

    def _gt_folder(self, *parts: str) -> Path:
        folder = self.gt_scene().joinpath(*parts)
        if not folder.is_dir():
            raise Unavailable(f"ground truth missing: {folder} not found")
        return folder

    def gt_cameras(self) -> Cameras:
        def load() -> Cameras:
            self._gt_folder("gt", "cameras")
            self._gt_folder("gt", "frames")
            return load_gt(self._gt_ctx(), "cameras", Cameras)
        return self.memo("gt_cameras", load)

    def gt_masks(self) -> np.ndarray:
        """Ground-truth foreground masks [T, H, W] at the kept frames and size."""
        def load() -> np.ndarray:
            self._gt_folder("gt", "masks")
            self._gt_folder("gt", "frames")
            return load_gt(self._gt_ctx(), "masks", Masks).masks
        return self.memo("gt_masks", load)

    def gt_keypoints(self) -> Keypoints:
        """Ground-truth keypoints at the kept frames and size (visible where ``confidence > 0``)."""
        def load() -> Keypoints:
            self._gt_folder("gt", "keypoints")
            self._gt_folder("gt", "frames")
            return load_gt(self._gt_ctx(), "keypoints", Keypoints)
        return self.memo("gt_keypoints", load)

    def gt_keypoint_valid_3d(self) -> np.ndarray:
        """[T, J] where the ground-truth keypoints' ``xyz`` was lifted from valid depth (an
        imported dataset's ``gt/keypoint_depth.npz``), at the kept frames."""
        def load() -> np.ndarray:
            valid = load_keypoint_valid_3d(self.gt_scene())
            if valid is None:
                raise Unavailable(f"the ground-truth keypoints of {self.gt_scene()} have no depth-lifted 3D positions "
                                  "(gt/keypoint_depth.npz, written by `dynrec import` for datasets with depth)")
            index, _, _ = frame_selection(self._gt_ctx(), len(valid), *self._gt_size())
            return valid[index]
        return self.memo("gt_keypoint_valid_3d", load)

    def _gt_size(self) -> tuple[int, int]:
        meta = Frames.load_meta(self._gt_folder("gt", "frames"))
        return int(meta["width"]), int(meta["height"])

    def scene_info(self) -> dict[str, Any]:
        """The ground-truth scene's ``scene.json`` (dataset, scene, resolution, ...); {} without one."""
        def load() -> dict[str, Any]:
            try:
                return json.loads((self.gt_scene() / "scene.json").read_text())
            except (Unavailable, OSError, json.JSONDecodeError):
                return {}
        return self.memo("scene_info", load)

    def gt_tracks_raw(self) -> Tracks:
        """Ground-truth tracks at the kept frames (whatever the work dir's tracks are)."""
        def load() -> Tracks:
            self._gt_folder("gt", "tracks")
            self._gt_folder("gt", "frames")
            gt = load_gt(self._gt_ctx(), "tracks", Tracks)
            if gt.xyz is None:
                raise Unavailable(f"ground truth missing: {self.gt_scene() / 'gt' / 'tracks'} has no xyz")
            return gt
        return self.memo("gt_tracks_raw", load)

    def scene(self) -> DynamicScene:
        """The trained scene (``recon/model.pt``) on the CPU."""
        return self.memo("scene", lambda: load_scene(self.stage("recon")))

    def gt_tracks(self) -> Tracks:
        """Ground-truth tracks at the kept frames, row for row the tracks of the work dir.

        The rows correspond only when the ``tracks`` stage copied the ground truth (backend
        ``gt``); otherwise :class:`Unavailable`.
        """
        def load() -> Tracks:
            gt = self.gt_tracks_raw()
            ours = self.input_tracks()
            backend = getattr(self.runner.config.stages["tracks"], "backend", "?")
            same = gt.xy.shape == ours.xy.shape and np.array_equal(gt.visible, ours.visible) and np.allclose(
                gt.xy[gt.visible], ours.xy[ours.visible], atol=1e-3)
            if not same:
                raise Unavailable(
                    f"the tracks stage (backend '{backend}') did not copy the ground-truth tracks, so the "
                    "model's trajectories have no ground-truth counterpart; preprocess with --gt SCENE")
            return gt
        return self.memo("gt_tracks", load)

    def heldout_names(self) -> list[str]:
        """Held-out cameras of the ground-truth scene (``scene.json["heldout"]``)."""
        def load() -> list[str]:
            scene = self.gt_scene()
            try:
                names = json.loads((scene / "scene.json").read_text()).get("heldout", [])
            except (OSError, json.JSONDecodeError) as exc:
                raise Unavailable(f"ground truth missing: {scene / 'scene.json'} is unreadable ({exc})") from exc
            if not names:
                raise Unavailable(f"the ground-truth scene {scene} has no held-out cameras")
            return [str(n) for n in names]
        return self.memo("heldout_names", load)

    def heldout(self) -> list[HeldoutView]:
        """Every held-out camera with its ground truth, the model's render and co-visibility.

        The renders come from the saved model through ``dynrec render``'s code (the
        ``heldout`` path), or from ``recon/renders/heldout/<cam>`` when every camera is there
        (reconstructions by older dynrec versions wrote them; tests put known renders there).
        """
        def load() -> list[HeldoutView]:
            names = self.heldout_names()
            base = self.stage("recon") / "renders" / "heldout"
            if all((base / n / Frames.FILE).is_file() for n in names):
                return [self._heldout_view(name, *self._saved_render(name, base / name)) for name in names]
            rendered = self._render_heldout(names)
            return [self._heldout_view(name, *rendered[name]) for name in names]
        return self.memo("heldout", load)

    def _saved_render(self, name: str, render_dir: Path) -> tuple[np.ndarray, np.ndarray | None]:
        frames = Frames.load(render_dir)
        self._check_frames(frames, render_dir, f"recon/renders/heldout/{name}")
        depth = Depth.load(render_dir).depth if (render_dir / Depth.FILE).is_file() else None
        if depth is not None:
            self._check_count(depth.shape[0], render_dir / Depth.FILE, "depth")
        return _to_float(frames.images), depth

    def _render_heldout(self, names: list[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Images [T, H, W, 3] in [0, 1] and depth [T, H, W] of each held-out camera at the kept
        frames, rendered from ``recon/model.pt`` (imported here: ``dynrec.export`` uses this
        package's video helpers)."""
        from dynrec.export.render import plan_shots, render_shot
        from dynrec.pipeline.result import load_reconstruction

        try:
            rec = load_reconstruction(self.root, device=self.runner.device)
            shots = {shot.name: shot for shot in plan_shots(rec, "heldout", list(range(rec.T)))}
        except DynrecError as exc:
            raise Unavailable(f"no held-out render: {exc}") from None
        missing = [n for n in names if f"heldout-{n}" not in shots]
        if missing:
            raise Unavailable(f"no held-out render of {', '.join(missing)}: "
                              f"{self.gt_scene() / 'heldout' / missing[0] / 'cameras'} not found")
        out = {}
        for name in names:
            seq = render_shot(rec, shots[f"heldout-{name}"])
            out[name] = (_to_float(seq.rgb8), seq.depth)
        return out

    def _heldout_view(self, name: str, render: np.ndarray, depth: np.ndarray | None) -> HeldoutView:
        folder = self._gt_folder("heldout", name)
        gt_frames = Frames.load(self._gt_folder("heldout", name, "frames"))
        _, gh, gw = gt_frames.shape
        index, W, H = frame_selection(self._gt_ctx(), gt_frames.shape[0], gw, gh)
        gt = _to_float(resize_images(gt_frames.images[index], W, H))
        try:
            covis, reason = self._covis(folder, index, W, H), ""
        except Unavailable as exc:
            covis, reason = None, exc.reason
        return HeldoutView(name, gt, render, depth, covis, reason)

    def _covis(self, folder: Path, index: np.ndarray, W: int, H: int) -> np.ndarray:
        """Co-visibility masks [T, H, W]: ``covisible/`` of an imported dataset, or computed
        from the ground-truth depth and cameras (see :func:`covisible_masks`)."""
        if (folder / "covisible").is_dir():
            return Masks.load(folder / "covisible").select(index, W, H).masks
        for sub in ("depth", "cameras", "masks"):
            self._gt_folder("heldout", folder.name, sub)
        self._gt_folder("gt", "depth")
        cams = Cameras.load(folder / "cameras").select(index, W, H)
        depth = Depth.load(folder / "depth").select(index, W, H).depth
        fg = Masks.load(folder / "masks").select(index, W, H).masks
        train_depth = Depth.load(self._gt_folder("gt", "depth")).select(index, W, H).depth
        train = self.gt_cameras()
        return covisible_masks(depth, cams.K, cams.w2c, fg, train_depth, train.K, train.w2c)
