"""Cheap per-part timing of training steps (measured on some steps only).

CUDA kernels run asynchronously, so a part's wall time is only meaningful between device
synchronisations; the timer synchronises around each part on the steps it measures and
does nothing (no synchronisation, no clock) on the others.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch

#: The parts of a training step, in the order they run.
PARTS = ("deform", "rasterize", "losses", "backward", "optimiser")


class StepTimer:
    """Accumulates the wall time of named parts of the steps it is switched on for.

    ``begin(on)`` starts a step (measured when ``on``); ``part(name)`` times a block;
    ``end()`` closes the step. :meth:`summary` gives milliseconds per measured step for each
    part, ``other`` (the rest of the step) and ``step`` (the whole).
    """

    def __init__(self, device: torch.device | str) -> None:
        self.device = torch.device(device)
        self.totals: dict[str, float] = dict.fromkeys(PARTS, 0.0)
        self.steps = 0
        self.on = False
        self._step_start = 0.0
        self._step_total = 0.0

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def begin(self, on: bool) -> None:
        """Start a step; it is measured when ``on``."""
        self.on = on
        if on:
            self._sync()
            self._step_start = time.perf_counter()

    @contextmanager
    def part(self, name: str) -> Iterator[None]:
        """Time the enclosed block as part ``name`` (only on a measured step)."""
        if not self.on:
            yield
            return
        self._sync()
        start = time.perf_counter()
        try:
            yield
        finally:
            self._sync()
            self.totals[name] = self.totals.get(name, 0.0) + time.perf_counter() - start

    def end(self) -> None:
        """Close the step started by :meth:`begin`."""
        if self.on:
            self._sync()
            self._step_total += time.perf_counter() - self._step_start
            self.steps += 1
        self.on = False

    def summary(self) -> dict[str, float]:
        """Milliseconds per measured step: each part, ``other`` and ``step``; ``steps_timed``."""
        if self.steps == 0:
            return {}
        out = {k: round(v / self.steps * 1000, 2) for k, v in self.totals.items()}
        step = self._step_total / self.steps * 1000
        out["other"] = round(step - sum(self.totals.values()) / self.steps * 1000, 2)
        out["step"] = round(step, 2)
        out["steps_timed"] = self.steps
        return out
