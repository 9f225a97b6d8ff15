"""Engines that run batch tasks: Ray (the default; a local instance or a cluster) and a serial
in-process one (no Ray; one task at a time, used by tests and for debugging).

An engine takes tasks (a stage group of one video, :func:`dynrec.batch.tasks.run_group`) and
hands back their :class:`GroupResult` as they finish. With Ray, each task declares its
resources: ``num_cpus`` (``--cpus-per-task``) and, for the groups that use a GPU
(reconstruct and evaluate, and preprocessing with learned backends), ``num_gpus`` (``--gpus-per-task``;
by default 1 when the cluster has GPUs, else 0). A task whose worker dies is retried by Ray
(``max_retries``, ``--retries``); errors inside a stage are not retried (the task returns
them).
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Any, Protocol
from urllib.parse import urlparse

from dynrec.batch.inputs import Job
from dynrec.batch.tasks import BatchOptions, GroupResult, run_group
from dynrec.errors import DynrecError

RAY_MISSING = ("dynrec batch runs on Ray, which is not installed: pip install 'dynrec[batch]' "
               "(or pip install 'ray[client]>=2.9')")


class Engine(Protocol):
    description: str

    def submit(self, job: Job, group: str, opts: BatchOptions, gpu: bool) -> Any: ...

    def wait(self, handles: list[Any], timeout: float) -> list[tuple[Any, GroupResult]]: ...

    def close(self) -> None: ...


class SerialEngine:
    """Runs each task in this process when :meth:`wait` is called, one at a time."""

    description = "serial (this process)"

    def __init__(self) -> None:
        self._tasks: dict[int, tuple[Job, str, BatchOptions]] = {}
        self._next = 0

    def submit(self, job: Job, group: str, opts: BatchOptions, gpu: bool) -> int:
        self._next += 1
        self._tasks[self._next] = (job, group, opts)
        return self._next

    def wait(self, handles: list[int], timeout: float) -> list[tuple[int, GroupResult]]:
        handle = min(handles)
        return [(handle, run_group(*self._tasks.pop(handle)))]

    def close(self) -> None:
        return None


def _probe(address: str) -> None:
    """Fail fast (3 s) on a ``HOST:PORT`` / ``ray://HOST:PORT`` nobody listens on: Ray itself
    retries an unreachable address for minutes."""
    url = urlparse(address if "://" in address else f"tcp://{address}")
    if url.hostname is None or url.port is None:
        raise DynrecError(f"--address {address}: expected ray://HOST:PORT, HOST:PORT or auto")
    try:
        socket.create_connection((url.hostname, url.port), timeout=3).close()
    except OSError as exc:
        raise DynrecError(f"cannot reach the Ray cluster at {address}: {exc.strerror or exc}; start it with "
                          "`ray start --head` (see docs/batch.md) or leave out --address for a local run") from exc


class RayEngine:
    """Ray tasks. :meth:`connect` starts a local instance (``address`` None: all CPUs and GPUs
    of this machine, no dashboard) or joins a cluster (``ray://HOST:PORT``, ``HOST:PORT`` or
    ``auto``); a Ray already initialised in this process is used as it is."""

    def __init__(self, ray: Any, owned: bool, cpus_per_task: float, gpus_per_task: float | None,
                 retries: int) -> None:
        self.ray, self.owned, self.retries = ray, owned, retries
        resources = ray.cluster_resources()
        self.cpus, self.gpus = float(resources.get("CPU", 0)), float(resources.get("GPU", 0))
        if cpus_per_task <= 0 or cpus_per_task > max(self.cpus, 1):
            self.close()
            raise DynrecError(f"--cpus-per-task {cpus_per_task:g}: the Ray cluster has {self.cpus:g} CPUs")
        if gpus_per_task is not None and (gpus_per_task < 0 or gpus_per_task > self.gpus):
            self.close()
            raise DynrecError(f"--gpus-per-task {gpus_per_task:g}: the Ray cluster has {self.gpus:g} GPUs")
        self.cpus_per_task = cpus_per_task
        self.gpus_per_task = gpus_per_task if gpus_per_task is not None else (1.0 if self.gpus else 0.0)
        self._remote = ray.remote(run_group)
        where = "local Ray instance" if owned else "Ray cluster"
        self.description = f"{where}: {self.cpus:g} CPUs, {self.gpus:g} GPUs"

    @classmethod
    def connect(cls, address: str | None = None, cpus_per_task: float = 1.0, gpus_per_task: float | None = None,
                retries: int = 3, num_cpus: int | None = None) -> RayEngine:
        try:
            import ray
        except ImportError as exc:
            raise DynrecError(RAY_MISSING) from exc
        owned = False
        if not ray.is_initialized():
            options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                       "logging_level": logging.ERROR}
            if address is None:
                options["num_cpus"] = num_cpus or os.cpu_count() or 1
            elif address != "auto":
                _probe(address)
                options.pop("include_dashboard")
            try:
                ray.init(address=address, **options)
            except (ConnectionError, ValueError, RuntimeError) as exc:
                where = "a local Ray instance" if address is None else f"the Ray cluster at {address}"
                raise DynrecError(f"cannot start or reach {where}: {exc}") from exc
            owned = True
        return cls(ray, owned, cpus_per_task, gpus_per_task, retries)

    def submit(self, job: Job, group: str, opts: BatchOptions, gpu: bool) -> Any:
        return self._remote.options(
            num_cpus=self.cpus_per_task, num_gpus=self.gpus_per_task if gpu else 0,
            max_retries=self.retries, retry_exceptions=False, name=f"dynrec {group} {job.name}",
        ).remote(job, group, opts)

    def wait(self, handles: list[Any], timeout: float) -> list[tuple[Any, GroupResult]]:
        ready, _ = self.ray.wait(handles, num_returns=len(handles), timeout=timeout)
        return [(ref, self._get(ref)) for ref in ready]

    def _get(self, ref: Any) -> GroupResult:
        try:
            return self.ray.get(ref)
        except self.ray.exceptions.RayError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            crashed = isinstance(exc, self.ray.exceptions.WorkerCrashedError | self.ray.exceptions.NodeDiedError)
            tries = self.retries + 1
            why = (f"worker died (tried {tries} time{'s' if tries > 1 else ''})" if crashed
                   else f"{type(exc).__name__}: {first}")
            return GroupResult("", "", error=f"{why}; finished stages are kept, rerun to continue")

    def close(self) -> None:
        if self.owned and self.ray.is_initialized():
            self.ray.shutdown()
