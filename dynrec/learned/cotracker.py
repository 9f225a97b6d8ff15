"""CoTracker3 through ``torch.hub``.

The hub API (``facebookresearch/co-tracker``): ``model(video, queries=q)`` or
``model(video, grid_size=g)`` with ``video`` float ``[B, T, 3, H, W]`` in 0..255 and
``q`` ``[B, N, 3]`` rows ``(t, x, y)``; it returns ``tracks [B, T, N, 2]`` and
``visibility [B, T, N]`` (bool from the hub predictors; a float is read as a confidence).

Coordinate convention (tested): CoTracker works in pixel *indices* of the video it is
given (pixel centre at integer coordinates), dynrec in pixels with centres at +0.5
(:mod:`dynrec.geometry.camera`). The video is resized to the model resolution with
``align_corners=False`` (pixel-edge units scale exactly by ``W_model / W``), so

    x_model = x_dynrec * W_model / W - 0.5,     x_dynrec = (x_model + 0.5) * W / W_model

and the same for y with the heights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from dynrec.errors import DynrecError
from dynrec.learned.weights import WeightsMissing, find_file, torch_device
from dynrec.weights.locate import cached_hub_repo

DEFAULT_HUB = "facebookresearch/co-tracker"
DEFAULT_MODEL = "cotracker3_offline"
CHECKPOINTS = {"cotracker3_offline": "scaled_offline.pth", "cotracker3_online": "scaled_online.pth"}
BACKEND = "tracks (CoTracker3)"


def load_cotracker(
    hub_name: str = DEFAULT_HUB,
    model: str = DEFAULT_MODEL,
    repo_dir: Path | str | None = None,
    checkpoint: Path | str | None = None,
    device: torch.device | str | None = "cpu",
    weights_dir: Path | str | None = None,
) -> Any:
    """Load CoTracker through torch.hub without downloading when it can.

    * ``repo_dir``: a local clone; loaded with ``source='local'``.
    * else a clone torch.hub cached earlier for ``hub_name`` (``$TORCH_HOME/hub``), loaded
      locally, and only then ``hub_name`` from GitHub (fails offline).

    The checkpoint is ``checkpoint`` (a path, or a file name looked up in ``--weights-dir`` /
    ``DYNREC_WEIGHTS`` / ``$TORCH_HOME/hub/checkpoints``), loaded into the model built with
    ``pretrained=False``; without one the hub entry point fetches its own weights
    (``pretrained=True``, cached under ``$TORCH_HOME/hub/checkpoints``).

    Raises:
        DynrecError: ``repo_dir`` has no ``hubconf.py``.
        WeightsMissing: the code or the weights are not available offline.
    """
    ckpt: Path | None = None
    if checkpoint is not None:
        ckpt = find_file(checkpoint, weights_dir, BACKEND)
    elif model in CHECKPOINTS:
        try:
            ckpt = find_file(CHECKPOINTS[model], weights_dir, BACKEND)
        except WeightsMissing:
            ckpt = None  # the hub entry point downloads (or finds) its own
    kwargs: dict[str, Any] = {"pretrained": ckpt is None}
    if repo_dir is not None:
        repo = Path(repo_dir).expanduser()
        if not (repo / "hubconf.py").is_file():
            raise DynrecError(
                f"CoTracker code folder {repo} has no hubconf.py; pass a clone of "
                f"https://github.com/{DEFAULT_HUB} (or use --offline for the optical-flow tracker)"
            )
        source, where = "local", str(repo)
    elif (cached := cached_hub_repo(hub_name)) is not None:
        source, where = "local", str(cached)
    else:
        source, where = "github", hub_name
    try:
        net = torch.hub.load(where, model, source=source, trust_repo=True, **kwargs)
    except DynrecError:
        raise
    except Exception as e:
        hint = (
            f"could not load '{model}' from {where} ({type(e).__name__}: {e}); "
            "pass a local clone of the co-tracker repository and its checkpoint"
        )
        searched = [where, torch.hub.get_dir()]
        raise WeightsMissing(f"{hub_name}:{model}", searched, hint, BACKEND) from e
    if ckpt is not None:
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
            state = state["model"]
        target = getattr(net, "model", net)
        try:
            target.load_state_dict(state)
        except RuntimeError as e:
            raise DynrecError(f"{ckpt} does not fit CoTracker '{model}': {e}") from e
    return net.eval().to(torch_device(device))


def model_size(height: int, width: int, max_side: int | None) -> tuple[int, int]:
    """(h, w) at which the model runs: long side ``max_side`` (never upscaled)."""
    if not max_side or max(height, width) <= max_side:
        return height, width
    s = max_side / max(height, width)
    return max(1, round(height * s)), max(1, round(width * s))


def track(
    model: Any,
    frames: np.ndarray,
    queries: np.ndarray | None = None,
    grid_size: int | None = None,
    chunk: int | None = None,
    max_side: int | None = 512,
    vis_threshold: float = 0.5,
    device: torch.device | str | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Track points through ``frames`` uint8 ``[T, H, W, 3]``.

    ``queries`` ``[N, 3]`` rows ``(t, x, y)`` in dynrec pixels (+0.5 centres), or
    ``grid_size`` for CoTracker's regular grid on frame 0. The video runs at
    :func:`model_size` (long side ``max_side``); coordinates are mapped back exactly (see
    the module docstring). ``chunk`` queries go through the model at once (all by default).

    Returns ``xy [N, T, 2]`` float32 (dynrec pixels of the input frames), ``visible [N, T]``
    bool and ``confidence [N, T]`` float32 in [0, 1].
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be [T, H, W, 3], got {frames.shape}")
    if (queries is None) == (grid_size is None):
        raise ValueError("give exactly one of queries and grid_size")
    T, H, W, _ = frames.shape
    h, w = model_size(H, W, max_side)
    if device is None:
        p = next(iter(model.parameters()), None) if hasattr(model, "parameters") else None
        device = p.device if p is not None else "cpu"
    dev = torch_device(device)
    video = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    if (h, w) != (H, W):
        video = F.interpolate(video, (h, w), mode="bilinear", align_corners=False, antialias=True)
    video = video.clamp(0, 255)[None].to(dev)  # [1, T, 3, h, w]
    sx, sy = w / W, h / H

    def run(**kw: Any) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            out = model(video, **kw)
        tracks, vis = out[0], out[1]
        conf = out[2] if len(out) > 2 and isinstance(out[2], torch.Tensor) else None
        if conf is not None and conf.shape != vis.shape:
            conf = None
        if vis.dtype == torch.bool:  # the hub predictors threshold visibility themselves
            v = vis.float()
            c = v if conf is None else conf.float() * v
        else:  # a visibility probability
            c = vis.float() if conf is None else vis.float() * conf.float()
            v = (c > vis_threshold).float()
        return tracks[0].float().cpu(), torch.stack([v[0], c[0]], 0).cpu()

    if grid_size is not None:
        tr, vc = run(grid_size=int(grid_size))
    else:
        q = np.asarray(queries, np.float64).reshape(-1, 3)
        qm = q.copy()
        qm[:, 1] = q[:, 1] * sx - 0.5
        qm[:, 2] = q[:, 2] * sy - 0.5
        qt = torch.tensor(qm, dtype=torch.float32)
        n = len(qt)
        step = n if not chunk else max(1, int(chunk))
        parts = [run(queries=qt[i : i + step][None].to(dev)) for i in range(0, n, step)]
        tr = torch.cat([p[0] for p in parts], 1) if parts else torch.zeros(T, 0, 2)
        vc = torch.cat([p[1] for p in parts], 2) if parts else torch.zeros(2, T, 0)
    xy = tr.permute(1, 0, 2).numpy().astype(np.float64)  # [N, T, 2]
    xy[..., 0] = (xy[..., 0] + 0.5) / sx
    xy[..., 1] = (xy[..., 1] + 0.5) / sy
    visible = vc[0].T.numpy() > 0.5
    confidence = np.clip(vc[1].T.numpy(), 0, 1).astype(np.float32)
    return xy.astype(np.float32), visible, confidence
