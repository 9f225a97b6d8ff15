"""The stage runner: keys, states, resume, ``--from`` / ``--only`` / ``--force``.

A stage's key is the hash of (name, artifact schema version, params, upstream keys,
external input content). A stage is *done* when its committed manifest holds the current
key and its files are intact; it re-runs otherwise, and everything downstream is stale
because its key includes this one. A failure is recorded and leaves all committed stages
as they were; the next run resumes at the failed stage.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import re
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from dynrec import __version__
from dynrec.errors import ArtifactError, DynrecError, StageFailed
from dynrec.pipeline import memory
from dynrec.pipeline.config import Config
from dynrec.pipeline.hashing import hash_json, hash_path
from dynrec.pipeline.lock import work_lock
from dynrec.pipeline.workdir import WorkDir
from dynrec.stages.base import StageContext, StageSpec

STATES = ("done", "stale", "failed", "missing")


@dataclass
class StageState:
    """What ``dynrec status`` shows for one stage."""

    name: str
    state: str
    key: str
    detail: str = ""
    duration_s: float | None = None
    size_bytes: int | None = None


class RateColumn(ProgressColumn):
    """Steps (or frames, points) per second of the task so far."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:.1f}/s" if speed else "", style="progress.data.speed")


class PlainProgress:
    """Progress as plain lines for a console that is not a terminal (a log, ``| tee``), where
    the live bar shows nothing: a line when a phase starts and at most every ``every`` seconds,
    with the phase's count, elapsed time and the time left at the phase's rate so far."""

    def __init__(self, console: Console, stage: str, every: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.console, self.stage, self.every, self.clock = console, stage, every, clock
        self.phase, self.phase_start, self.last = "", 0.0, 0.0

    def update(self, description: str, done: int, total: int) -> None:
        now = self.clock()
        phase = re.sub(r"\d[\d.e+-]*", "#", description)  # "loss 5.04" and "loss 4.98" are one phase
        if phase != self.phase:
            self.phase, self.phase_start = phase, now
        elif now - self.last < self.every:
            return
        self.last = now
        elapsed = now - self.phase_start
        line = f"  {self.stage}: {description}"
        if total > 0:
            line += f" {done}/{total} ({100 * done / total:.0f}%), {elapsed:.0f} s"
            if 0 < done < total and elapsed >= 1:  # no rate yet at a phase's first line
                line += f", about {elapsed * (total - done) / done:.0f} s left"
        self.console.print(line, highlight=False, markup=False)


class Runner:
    """Runs registered stages over a work dir with a resolved config."""

    def __init__(self, work: WorkDir, specs: list[StageSpec], config: Config, device: str = "cpu",
                 console: Console | None = None):
        self.work = work
        self.specs = {s.name: s for s in specs}
        self.order = [s.name for s in specs]
        self.config = config
        self.device = device
        self.console = console or Console(stderr=True)
        self._keys: dict[str, str] = {}
        #: Stages whose ``preflight`` already ran (on the input given to :func:`open_runner`).
        self.preflighted: set[str] = set()
        self._parts: dict[str, dict[str, Any]] = {}
        #: called with a stage's name just before it executes (``dynrec batch`` shows it)
        self.before_stage: Callable[[str], None] | None = None

    # ----- keys and states -------------------------------------------------------------
    @property
    def source(self) -> Path | None:
        return Path(self.config.input.source) if self.config.input.source else None

    @property
    def gt(self) -> Path | None:
        return Path(self.config.input.gt) if self.config.input.gt else None

    def _key_parts(self, name: str) -> dict[str, Any]:
        """What the key of ``name`` hashes; external inputs (a video) are hashed once per runner."""
        if name not in self._parts:
            self._parts[name] = self._compute_key_parts(name)
        return self._parts[name]

    def params(self, name: str) -> Any:
        """The settings stage ``name`` runs with on this runner's device (its spec's
        ``for_device``: e.g. recon's schedule), which its key hashes."""
        return self.specs[name].for_device(self.config.stages[name], self.device)

    def _compute_key_parts(self, name: str) -> dict[str, Any]:
        spec = self.specs[name]
        params = self.params(name)
        external = spec.external(params, self.source, self.gt)
        return {
            "stage": name,
            "version": spec.version,
            "params": dataclasses.asdict(params),
            "upstream": {u: self.key(u) for u in spec.upstream},
            "external": {str(p): hash_path(p) for p in external},
        }

    def key(self, name: str) -> str:
        """Current key of ``name`` (cached for the runner's lifetime)."""
        if name not in self._keys:
            self._keys[name] = hash_json(self._key_parts(name))[:16]
        return self._keys[name]

    def state(self, name: str) -> StageState:
        try:
            key = self.key(name)
        except DynrecError as exc:
            return StageState(name, "missing" if self.work.manifest(name) is None else "stale", "?", str(exc))
        manifest = self.work.manifest(name)
        failure = self.work.failure(name)
        if manifest is not None and manifest.get("key") == key:
            changed = self.work.changed_files(name, manifest)
            if not changed:
                return StageState(name, "done", key, "", manifest.get("duration_s"), _size(manifest))
            detail = f"artifact changed on disk: {', '.join(changed[:3])}"
            return StageState(name, "stale", key, detail, manifest.get("duration_s"), _size(manifest))
        if failure is not None and failure.get("key") == key:
            return StageState(name, "failed", key, failure.get("error", ""))
        if manifest is not None:
            return StageState(name, "stale", key, self._why_stale(name, manifest),
                              manifest.get("duration_s"), _size(manifest))
        return StageState(name, "missing", key)

    def _why_stale(self, name: str, manifest: dict[str, Any]) -> str:
        if manifest.get("key") == "invalid":
            return manifest.get("invalid_reason", "artifact invalid")
        parts = self._key_parts(name)
        params = json.loads(json.dumps(parts["params"]))  # as the manifest stores them (tuples as lists)
        changed = [k for k, v in params.items() if manifest.get("params", {}).get(k) != v]
        if changed:
            return "params changed: " + ", ".join(changed)
        ups = [u for u, k in parts["upstream"].items() if manifest.get("upstream", {}).get(u) != k]
        if ups:
            return "upstream changed: " + ", ".join(ups)
        if parts["external"] != manifest.get("external"):
            return "input changed"
        return "schema version changed"

    def states(self) -> list[StageState]:
        return [self.state(n) for n in self.order]

    # ----- planning ----------------------------------------------------------------------
    def _check_stage(self, name: str, what: str) -> None:
        if name not in self.specs:
            raise DynrecError(f"{what} names unknown stage '{name}'; stages: {', '.join(self.order)}")

    def _ancestors(self, name: str) -> set[str]:
        out: set[str] = set()
        for up in self.specs[name].upstream:
            out |= {up} | self._ancestors(up)
        return out

    def plan(self, targets: list[str], from_: str | None = None, only: str | None = None,
             force: bool = False) -> tuple[list[str], set[str]]:
        """Stages to visit in order, and the ones to re-run even if done."""
        for t in targets:
            self._check_stage(t, "target")
        if only is not None:
            self._check_stage(only, "--only")
            return [only], {only}
        wanted = set(targets)
        for t in targets:
            wanted |= self._ancestors(t)
        plan = [n for n in self.order if n in wanted]
        forced = set(plan) if force else set()
        if from_ is not None:
            self._check_stage(from_, "--from")
            if from_ not in plan:
                raise DynrecError(f"--from {from_}: this command runs {', '.join(plan)}")
            forced |= {n for n in plan if n == from_ or from_ in self._ancestors(n)}
        return plan, forced

    # ----- running -------------------------------------------------------------------------
    def run(self, targets: list[str], from_: str | None = None, only: str | None = None,
            force: bool = False) -> list[str]:
        """Bring ``targets`` up to date under the work dir's lock (:mod:`dynrec.pipeline.lock`);
        returns the stages that actually ran."""
        plan, forced = self.plan(targets, from_, only, force)
        pending = [n for n in plan if n in forced or self.state(n).state != "done"]
        for name in pending:
            if name not in self.preflighted:
                self.specs[name].preflight(self.params(name), self.source, self.gt, self.console)
                self.preflighted.add(name)
        self.ensure_weights(pending)
        ran = []
        what = f"a run of {targets[0]}" + (f"..{targets[-1]}" if len(targets) > 1 else "")
        with work_lock(self.work.root, what) as lock:
            for name in plan:
                state = self.state(name)
                if state.state == "done" and name not in forced:
                    self.console.print(f"[green]✓[/] {name} [dim](done, key {state.key})[/]")
                    continue
                self._require_upstream(name)
                lock.set_stage(name)
                if self.before_stage is not None:
                    self.before_stage(name)
                self._execute(name)
                ran.append(name)
        return ran

    def ensure_weights(self, stages: list[str]) -> None:
        """Before any stage runs: the network weights ``stages`` will load, fetched when missing
        (unless the network is off, see :func:`dynrec.weights.network_allowed`); every missing
        one is named at once otherwise."""
        from dynrec.weights import ensure

        needed = [w for name in stages for w in self.specs[name].weights(self.params(name))]
        if needed:
            ensure(needed, self.config.run.weights_dir, self.console)

    def _require_upstream(self, name: str) -> None:
        for up in self.specs[name].upstream:
            st = self.state(up)
            if st.state != "done":
                raise DynrecError(
                    f"stage '{name}' needs '{up}', which is {st.state}"
                    + (f" ({st.detail})" if st.detail else "")
                    + f"; run `dynrec preprocess VIDEO -o {self.work.root}` (or `--from {up}`) to make it"
                )

    def _owner(self, path: Path) -> str | None:
        try:
            rel = path.resolve().relative_to(self.work.root.resolve())
        except ValueError:
            return None
        head = rel.parts[0] if rel.parts else ""
        return head if head in self.specs else None

    def _execute(self, name: str) -> None:
        spec, params, key = self.specs[name], self.params(name), self.key(name)
        tmp = self.work.prepare_tmp(name, key)
        started = time.time()
        plain = None if self.console.is_terminal else PlainProgress(self.console, name)
        with Progress(TextColumn("  {task.description}"), BarColumn(), TaskProgressColumn(),
                      RateColumn(), TimeElapsedColumn(), TimeRemainingColumn(), console=self.console,
                      transient=True) as bar:
            task = bar.add_task(name, total=None)

            def progress(description: str, done: int, total: int) -> None:
                bar.update(task, description=f"{name}: {description}", completed=done, total=total)
                if plain is not None:
                    plain.update(description, done, total)

            ctx = StageContext(work=self.work.root, out=tmp,
                               inputs={u: self.work.stage_dir(u) for u in spec.upstream},
                               device=self.device, source=self.source, gt=self.gt,
                               weights_dir=Path(w).expanduser() if (w := self.config.run.weights_dir) else None,
                               logs=self.work.log_file(name).parent,
                               console=self.console, progress=progress)
            memory.reset()
            try:
                info = spec.run(ctx, params) or {}
            except ArtifactError as exc:
                owner = exc.stage or self._owner(exc.path)
                message = str(exc)
                if owner is not None and owner != name:
                    self.work.invalidate(owner, f"corrupted artifact: {exc.problem}")
                    message += f"\nstage '{owner}' is marked stale; run the same command again to rebuild it"
                self._fail(name, key, message)
                raise DynrecError(message) from exc
            except DynrecError as exc:
                self._fail(name, key, str(exc))
                raise
            except KeyboardInterrupt:
                self._fail(name, key, "interrupted")
                raise
            except Exception as exc:
                log = self._fail(name, key, f"{type(exc).__name__}: {exc}")
                raise StageFailed(
                    f"stage '{name}' failed: {type(exc).__name__}: {exc}\n"
                    f"full traceback in {log}; earlier stages are intact, run again to resume here"
                ) from exc
        duration = time.time() - started
        manifest = {
            "stage": name, "key": key, **self._key_parts(name), "device": self.device,
            "versions": _versions(), "started": started, "duration_s": round(duration, 3),
            "memory": memory.peak(), "info": info,
        }
        self.work.commit(name, manifest)
        self.work.clear_failure(name)
        self.console.print(f"[green]✓[/] {name} [dim]({duration:.1f}s, key {key})[/]")

    def _fail(self, name: str, key: str, message: str) -> Path:
        self.work.record_failure(name, key, message, traceback.format_exc())
        self.console.print(f"[red]✗[/] {name} failed")
        return self.work.log_file(name)


def _size(manifest: dict[str, Any]) -> int:
    return int(sum(manifest.get("files", {}).values()))


def _versions() -> dict[str, str]:
    import torch

    return {"dynrec": __version__, "python": platform.python_version(), "numpy": np.__version__,
            "torch": torch.__version__}
