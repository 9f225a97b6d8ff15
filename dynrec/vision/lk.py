"""Template-anchored Lucas-Kanade point tracking (the ``offline`` tracker).

Plain frame-to-frame LK drifts (every step adds its error) and loses a point for good at
its first occlusion. Here each query point keeps the patch of its query frame (its
*anchor*) and, frame by frame in both directions from the query frame:

1. **chain**: the patch of the previous frame is aligned to the current one (constant
   velocity start); a forward-backward check (align back, compare with the start, in
   pixels) tells whether the point is still visible;
2. **anchor**: the anchor patch is aligned (affine, robust, colour-weighted; see
   :mod:`dynrec.vision.patches`) starting from the chained position. Where both agree the
   anchored position is kept, so there is no drift; where the anchor keeps disagreeing for
   ``refresh`` frames (the appearance changed) the anchor is re-taken from the current frame;
3. **occluded** points are carried along with the median motion of their neighbours (the
   nearest query points of the same query frame) and re-acquired when the anchor aligns
   again with a forward-backward check against the anchor frame.

Samples that match their anchor get confidence ``1 - residual / (2 max_residual)`` in
(0.5, 1]; samples followed by the chain alone (the anchor no longer agrees) are visible with
confidence ``chain_confidence`` (below 0.5, so consumers that need verified samples, such
as the cameras, can skip them); occluded ones get 0 and the carried-along position. The
API follows CoTracker's ``queries``: rows ``(t, x, y)``, with pixel centres at +0.5.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.spatial import cKDTree
from torch import Tensor

from dynrec.vision.flow import dense_flow
from dynrec.vision.patches import AlignParams, Patches, Pyramid, align, extract, single_threaded

#: ``progress(done, total)``: frames processed over both directions.
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class TrackParams:
    """``patch``: the alignment (see :class:`AlignParams`); ``chain_iters`` /
    ``anchor_iters`` / ``check_iters`` Gauss-Newton steps per level (coarsest first) of the
    chain step, the anchor refinement and the forward-backward checks; ``fb_chain`` /
    ``fb_anchor``: forward-backward thresholds (px) of the chain step and of a re-acquisition;
    ``max_residual``: mean colour distance (RGB in [0, 1]) above which a patch is occluded;
    ``max_anchor_residual``: the same for the anchor patch of a chained point;
    ``max_chain_residual``: the same between consecutive frames (appearance barely changes
    in one frame; flickering, aliased texture does);
    ``agree_px``: chain and anchor agree within this distance; ``refresh``: frames of
    disagreement before the anchor is re-taken; ``neighbours`` that carry an occluded point;
    ``chain_confidence`` of samples the anchor does not confirm; ``flow_start``: where the chain
    step from constant velocity fails its checks or leaves a residual above ``flow_retry`` x
    ``max_chain_residual``, it starts again from dense optical flow (OpenCV's DIS) at the point,
    with its affine from the flow's local Jacobian, and keeps the start that passes the checks
    with the lower residual (camera shake moves points further than the patch alignment's
    capture range; near motion boundaries the blended flow is the worse start, so it is the
    second one; trying it only where the first is in doubt saves a quarter of the time)."""

    patch: AlignParams = field(default_factory=lambda: AlignParams(radius=4, levels=3, iters=(5, 5, 8)))
    chain_iters: tuple[int, ...] = (2, 3, 5)
    anchor_iters: tuple[int, ...] = (0, 2, 5)
    check_iters: tuple[int, ...] = (0, 0, 5)
    fb_chain: float = 0.5
    fb_anchor: float = 1.0
    max_residual: float = 0.15
    max_anchor_residual: float = 0.2
    max_chain_residual: float = 0.08
    agree_px: float = 1.0
    refresh: int = 8
    neighbours: int = 10
    chain_confidence: float = 0.4
    flow_start: bool = True
    flow_retry: float = 0.5


@dataclass
class TrackResult:
    """``xy`` [N, T, 2] pixels (+0.5 centres), ``visible`` [N, T] bool, ``confidence`` [N, T]."""

    xy: np.ndarray
    visible: np.ndarray
    confidence: np.ndarray


def _eye(n: int) -> Tensor:
    return torch.eye(2).repeat(n, 1, 1)


def query_neighbours(queries: np.ndarray, k: int) -> np.ndarray:
    """[N, k] indices of the ``k`` nearest other queries of the same query frame (a point
    with fewer peers repeats the ones it has, or itself)."""
    N = len(queries)
    out = np.tile(np.arange(N)[:, None], (1, max(k, 1)))
    frames = queries[:, 0].astype(np.int64)
    for t in np.unique(frames):
        group = np.flatnonzero(frames == t)
        if len(group) < 2:
            continue
        kk = max(min(k, len(group) - 1), 1)
        _, near = cKDTree(queries[group, 1:]).query(queries[group, 1:], k=kk + 1)
        near = group[near[:, 1:]]  # the first hit is the point itself
        out[group] = np.pad(near, ((0, 0), (0, out.shape[1] - kk)), mode="edge")
    return out


class _Pass:
    """Tracking in one direction (``step`` = +1 forward, -1 backward) from the query frames."""

    def __init__(self, pyr: Pyramid, queries: np.ndarray, anchors: Patches, params: TrackParams,
                 xy: np.ndarray, vis: np.ndarray, conf: np.ndarray, neighbours: np.ndarray,
                 flow: Callable[[int, int], np.ndarray] | None = None):
        self.pyr, self.p, self.xy, self.vis, self.conf, self.nbr = pyr, params, xy, vis, conf, neighbours
        self.flow = flow
        self.q = queries[:, 0].astype(np.int64)
        N = len(queries)
        self.anchors = anchors.take(torch.arange(N))  # re-taken anchors replace rows of this copy
        self.anchor_frame = self.q.copy()
        self.anchor_xy = torch.from_numpy(queries[:, 1:].astype(np.float32))
        self.A = _eye(N)  # affine from the anchor patch to the current frame
        self.fails = np.zeros(N, np.int64)

    def run(self, step: int, progress: Callable[[], None]) -> None:
        T = self.xy.shape[1]
        frames = range(1, T) if step > 0 else range(T - 2, -1, -1)
        for t in frames:
            s = t - step
            active = np.flatnonzero(self.q <= s if step > 0 else self.q >= s)
            if len(active):
                self._step(active, s, t, step)
            progress()

    def _step(self, active: np.ndarray, s: int, t: int, step: int) -> None:
        p = self.p
        pos = self.xy[active, s].copy()
        ok = np.zeros(len(active), bool)
        conf = np.zeros(len(active), np.float32)
        seen = np.flatnonzero(self.vis[active, s])
        if len(seen):
            ok_seen, pos_seen, conf_seen = self._chain(active[seen], s, t, step)
            pos[seen[ok_seen]] = pos_seen[ok_seen]
            ok[seen] = ok_seen
            conf[seen] = conf_seen
        lost = np.flatnonzero(~ok)
        if len(lost):
            guess, supported = self._carry(active, lost, pos, ok, s)
            pos[lost] = guess
            # only where the neighbours say where to look: a point that left the view with
            # its neighbours could lock onto any look-alike when something comes back
            retry = lost[supported]
            if len(retry):
                ok_lost, pos_lost, conf_lost = self._reacquire(active[retry], guess[supported], t)
                pos[retry] = pos_lost
                ok[retry] = ok_lost
                conf[retry] = conf_lost
        H, W = self.pyr.height, self.pyr.width
        ok &= (pos[:, 0] >= 0) & (pos[:, 0] < W) & (pos[:, 1] >= 0) & (pos[:, 1] < H)
        self.xy[active, t] = pos
        self.vis[active, t] = ok
        self.conf[active, t] = np.where(ok, conf, 0.0)
        stale = active[ok & (self.fails[active] >= p.refresh)]
        if len(stale):  # the appearance changed for good: re-take those anchors here
            rows = torch.from_numpy(stale)
            here = torch.from_numpy(self.xy[stale, t])
            self.anchors.put(rows, extract(self.pyr, t, here, p.patch))
            self.anchor_frame[stale] = t
            self.anchor_xy[rows] = here
            self.A[rows] = _eye(len(stale))
            self.fails[stale] = 0

    def _chain(self, idx: np.ndarray, s: int, t: int, step: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Points visible at ``s``: chain step + anchor refinement -> (ok, xy, confidence)."""
        p = self.p
        T = self.xy.shape[1]
        prev = torch.from_numpy(self.xy[idx, s])
        velocity = np.zeros((len(idx), 2), np.float32)
        ss = s - step
        if 0 <= ss < T:
            had = self.vis[idx, ss] & (self.q[idx] <= ss if step > 0 else self.q[idx] >= ss)
            velocity[had] = self.xy[idx[had], s] - self.xy[idx[had], ss]
        patches = extract(self.pyr, s, prev, p.patch)
        chained, Ac, rc, ok = self._chain_try(patches, prev, prev + torch.from_numpy(velocity), _eye(len(idx)), s, t)
        miss = torch.nonzero(~ok | (rc > p.flow_retry * p.max_chain_residual)).squeeze(1)
        if self.flow is not None and len(miss):  # where constant velocity fails or fits badly
            start, A0 = flow_start(self.flow(s, t), self.xy[idx[miss.numpy()], s], p.patch.radius)
            fx, fA, fr, fok = self._chain_try(patches.take(miss), prev[miss], start, A0, s, t)
            wins = fok & (~ok[miss] | (fr < rc[miss]))  # it passes the checks with a lower residual
            use = miss[wins]
            chained[use], Ac[use], rc[use], ok[use] = fx[wins], fA[wins], fr[wins], True
        rows = torch.from_numpy(idx)
        anchored, Aa, ra = align(self.pyr, t, self.anchors.take(rows), chained, self.A[rows], p.patch, p.anchor_iters)
        # a point that no longer looks like its anchor anywhere near is occluded, even when
        # the chain follows it: the chain alone would slide onto an occluder's texture
        ok = ok & (ra < p.max_anchor_residual)
        agree = ok & ((anchored - chained).norm(dim=-1) < p.agree_px) & (ra < p.max_residual)
        self.A[rows[agree]] = Aa[agree]
        agree_np, ok_np = agree.numpy(), ok.numpy()
        self.fails[idx[agree_np]] = 0
        self.fails[idx[ok_np & ~agree_np]] += 1
        xy = torch.where(agree[:, None], anchored, chained).numpy()
        return ok_np, xy, np.where(agree_np, self._confidence(ra), p.chain_confidence).astype(np.float32)

    def _chain_try(self, patches: Patches, prev: Tensor, start: Tensor, A0: Tensor, s: int, t: int
                   ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Align frame-``s`` ``patches`` at ``prev`` [N, 2] to frame ``t`` from ``start`` / ``A0``
        and check back -> (xy [N, 2], A [N, 2, 2], residual [N], forward-backward ok [N])."""
        p = self.p
        chained, Ac, rc = align(self.pyr, t, patches, start, A0, p.patch, p.chain_iters)
        back = extract(self.pyr, t, chained, p.patch, Ac)
        returned, _, _ = align(self.pyr, s, back, prev, _eye(len(prev)), p.patch, p.check_iters)
        ok = ((returned - prev).norm(dim=-1) < p.fb_chain) & (rc < p.max_chain_residual)
        return chained, Ac, rc, ok

    def _carry(self, active: np.ndarray, lost: np.ndarray, pos: np.ndarray, ok: np.ndarray, s: int
               ) -> tuple[np.ndarray, np.ndarray]:
        """Positions [L, 2] of the ``lost`` rows of ``active`` moved by their neighbours' median
        motion, and whether at least two neighbours were tracked to say so [L]."""
        N = self.xy.shape[0]
        moved = np.full((N, 2), np.nan, np.float32)
        moved[active[ok]] = pos[ok] - self.xy[active[ok], s]
        disp = moved[self.nbr[active[lost]]]  # [L, k, 2]
        enough = np.isfinite(disp[..., 0]).sum(1) >= 2
        guess = self.xy[active[lost], s].copy()
        if enough.any():
            guess[enough] += np.nanmedian(disp[enough], axis=1)
        return guess, enough

    def _reacquire(self, idx: np.ndarray, guess: np.ndarray, t: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Points not chained: align the anchor from ``guess``, check against the anchor frame."""
        p = self.p
        rows = torch.from_numpy(idx)
        start = torch.from_numpy(guess)
        found, Af, rf = align(self.pyr, t, self.anchors.take(rows), start, self.A[rows], p.patch)
        fb = torch.full((len(idx),), float("inf"))
        for a in np.unique(self.anchor_frame[idx]):
            g = torch.from_numpy(np.flatnonzero(self.anchor_frame[idx] == a))
            back = extract(self.pyr, t, found[g], p.patch, Af[g])
            ref = self.anchor_xy[rows[g]]
            returned, _, _ = align(self.pyr, int(a), back, ref, _eye(len(g)), p.patch, p.check_iters)
            fb[g] = (returned - ref).norm(dim=-1)
        ok = (fb < p.fb_anchor) & (rf < p.max_residual)
        self.A[rows[ok]] = Af[ok]
        self.fails[idx[ok.numpy()]] = 0
        xy = torch.where(ok[:, None], found, start).numpy()
        return ok.numpy(), xy, self._confidence(rf)

    def _confidence(self, residual: Tensor) -> np.ndarray:
        """Confidence in (0.5, 1] of a sample that matches its anchor with ``residual``."""
        return (1.0 - residual / (2 * self.p.max_residual)).clamp(0.5, 1.0).numpy().astype(np.float32)


def flow_start(flow: np.ndarray, xy: np.ndarray, radius: int) -> tuple[Tensor, Tensor]:
    """Start of a patch alignment from a dense flow [H, W, 2]: ``(xy + flow(xy) [N, 2],
    I + d flow / d x [N, 2, 2])``, the flow and its Jacobian averaged over the patch
    (central differences ``radius`` pixels apart, bilinear sampling; pixel centres at +0.5)."""
    import cv2

    def at(pts: np.ndarray) -> np.ndarray:
        m = (pts - 0.5).astype(np.float32)
        return np.stack([cv2.remap(flow[..., c], m[:, 0:1], m[:, 1:2], cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_REPLICATE)[:, 0] for c in range(2)], axis=-1)

    xy = xy.astype(np.float32)
    r = float(max(radius, 1))
    dx, dy = np.array([r, 0], np.float32), np.array([0, r], np.float32)
    right, left, down, up = at(xy + dx), at(xy - dx), at(xy + dy), at(xy - dy)
    J = np.stack([(right - left) / (2 * r), (down - up) / (2 * r)], axis=-1)
    moved = xy + (at(xy) + right + left + down + up) / 5
    A = np.eye(2, dtype=np.float32)[None] + J
    ok = np.isfinite(moved).all(1) & np.isfinite(A).all((1, 2)) & (np.linalg.det(A) > 0.25)
    moved[~ok] = xy[~ok]
    A[~ok] = np.eye(2, dtype=np.float32)
    return torch.from_numpy(moved), torch.from_numpy(A)


def track_points(frames: np.ndarray, queries: np.ndarray, params: TrackParams | None = None,
                 progress: Progress | None = None) -> TrackResult:
    """Track query points through a video, forward and backward from their query frames.

    Args:
        frames: [T, H, W, 3] uint8 RGB.
        queries: [N, 3] rows ``(t, x, y)``: query frame and pixel position (+0.5 centres).
        params: see :class:`TrackParams`.
        progress: called with (frames done, total) as tracking advances.

    Returns:
        :class:`TrackResult` with ``xy`` [N, T, 2], ``visible`` [N, T] (True at the query
        frame), ``confidence`` [N, T] (0 where not visible).
    """
    with single_threaded():
        return _track(frames, np.asarray(queries, dtype=np.float64).reshape(-1, 3), params or TrackParams(), progress)


def _track(frames: np.ndarray, queries: np.ndarray, params: TrackParams, progress: Progress | None) -> TrackResult:
    T = frames.shape[0]
    N = len(queries)
    xy = np.zeros((N, T, 2), np.float32)
    vis = np.zeros((N, T), bool)
    conf = np.zeros((N, T), np.float32)
    if N == 0:
        return TrackResult(xy, vis, conf)
    q = queries[:, 0].astype(np.int64)
    if (q < 0).any() or (q >= T).any():
        raise ValueError(f"track_points: query frames must lie in 0..{T - 1}")
    xy[np.arange(N), q] = queries[:, 1:]
    vis[np.arange(N), q] = True
    pyr = Pyramid(frames, params.patch.levels)
    anchors = None
    for t in np.unique(q):
        rows = np.flatnonzero(q == t)
        patches = extract(pyr, int(t), torch.from_numpy(queries[rows, 1:].astype(np.float32)), params.patch)
        if anchors is None:
            anchors = Patches([v.new_zeros((N, *v.shape[1:])) for v in patches.values],
                              [g.new_zeros((N, *g.shape[1:])) for g in patches.grads],
                              [w.new_zeros((N, *w.shape[1:])) for w in patches.weights])
        anchors.put(torch.from_numpy(rows), patches)
    assert anchors is not None
    neighbours = query_neighbours(queries, params.neighbours)
    done = [0]

    def advance() -> None:
        done[0] += 1
        if progress is not None:
            progress(done[0], 2 * (T - 1))

    for step in (1, -1):
        flow = dense_flow(frames) if params.flow_start else None
        _Pass(pyr, queries, anchors, params, xy, vis, conf, neighbours, flow).run(step, advance)
    conf[np.arange(N), q] = 1.0
    return TrackResult(xy, vis, conf)
