"""Errors a user can cause. The CLI prints their message and exits non-zero, with no traceback."""

from __future__ import annotations

from pathlib import Path


class DynrecError(Exception):
    """An error caused by input, configuration or environment; the message says what to do."""

    exit_code = 1


class ArtifactError(DynrecError):
    """An artifact on disk is missing, truncated or has the wrong shape.

    ``stage`` (when known) is the stage that wrote the artifact; the runner marks it stale.
    """

    def __init__(self, path: Path | str, field: str | None, problem: str, stage: str | None = None):
        self.path = Path(path)
        self.field = field
        self.problem = problem
        self.stage = stage
        where = f"{self.path}" + (f", field '{field}'" if field else "")
        super().__init__(f"{where}: {problem}")


class StageFailed(DynrecError):
    """A stage raised; the runner recorded the failure and kept earlier stages intact."""
