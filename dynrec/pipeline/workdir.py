"""Layout of a work directory and its bookkeeping.

```
WORK/dynrec.toml              resolved config of the last run
WORK/<stage>/manifest.json    written last; a stage is done when it holds the current key
WORK/.<stage>.tmp/            a stage being written (renamed to WORK/<stage>/ on success)
WORK/.dynrec/workdir.json     {"schema": N}: refused if written by a newer dynrec
WORK/.dynrec/failed/<stage>.json   the last failure of a stage (key, error, time)
WORK/.dynrec/logs/<stage>.log      full traceback of that failure
```
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dynrec import WORKDIR_SCHEMA, __version__
from dynrec.artifacts.base import save_json
from dynrec.errors import DynrecError

MANIFEST = "manifest.json"
CONFIG_FILE = "dynrec.toml"


@dataclass
class WorkDir:
    """A work directory. Use :meth:`open` to create or validate one."""

    root: Path

    @classmethod
    def check(cls, root: Path, create: bool) -> None:
        """Errors, before anything is written: ``root`` is a file; without ``create``, it does
        not exist or is not a dynrec work dir; it was written by a newer dynrec."""
        root = Path(root)
        if root.exists() and not root.is_dir():
            raise DynrecError(f"work dir {root} is a file, not a folder; choose another output path")
        if not root.exists():
            if not create:
                raise DynrecError(f"work dir {root} does not exist; run `dynrec preprocess VIDEO -o {root}` first")
            return
        work = cls(root)
        if not create and not work.meta_file.exists() and not work.config_file.exists():
            raise DynrecError(f"{root} is not a dynrec work dir (no {CONFIG_FILE}, no .dynrec/); "
                              f"make one with `dynrec preprocess VIDEO -o {root}`")
        work._check_schema()

    @classmethod
    def open(cls, root: Path, create: bool, writable: bool | None = None) -> WorkDir:
        """Check (and with ``create``, make) a usable work dir; errors say what is wrong.
        ``writable`` (default: ``create``) refuses a work dir that cannot be written to, before
        the command does anything."""
        root = Path(root)
        cls.check(root, create)
        if not root.exists():
            try:
                root.mkdir(parents=True)
            except OSError as exc:
                raise DynrecError(f"cannot create work dir {root}: {exc.strerror or exc}") from exc
        work = cls(root)
        work._check_schema()
        if create if writable is None else writable:
            work._check_writable()
        if create and not work.meta_file.exists():
            save_json(work.meta_file, {"schema": WORKDIR_SCHEMA, "created_by": __version__})
        work._recover()
        return work

    @property
    def meta_dir(self) -> Path:
        return self.root / ".dynrec"

    @property
    def meta_file(self) -> Path:
        return self.meta_dir / "workdir.json"

    @property
    def config_file(self) -> Path:
        return self.root / CONFIG_FILE

    def stage_dir(self, stage: str) -> Path:
        return self.root / stage

    def tmp_dir(self, stage: str) -> Path:
        return self.root / f".{stage}.tmp"

    def _old_dir(self, stage: str) -> Path:
        return self.root / f".{stage}.old"

    def failure_file(self, stage: str) -> Path:
        return self.meta_dir / "failed" / f"{stage}.json"

    def log_file(self, stage: str) -> Path:
        return self.meta_dir / "logs" / f"{stage}.log"

    def _check_schema(self) -> None:
        if not self.meta_file.exists():
            return
        try:
            schema = int(json.loads(self.meta_file.read_text())["schema"])
        except (ValueError, KeyError, TypeError, json.JSONDecodeError) as exc:
            raise DynrecError(f"{self.meta_file} is unreadable ({exc}); this is not a dynrec work dir") from exc
        if schema > WORKDIR_SCHEMA:
            raise DynrecError(
                f"work dir {self.root} was written by a newer dynrec (schema {schema}, this one reads "
                f"up to {WORKDIR_SCHEMA}); upgrade dynrec or use another work dir"
            )

    def _check_writable(self) -> None:
        probe = self.root / ".dynrec-write-test"
        try:
            probe.write_text("")
            probe.unlink()
        except OSError as exc:
            raise DynrecError(f"work dir {self.root} is not writable ({exc.strerror or exc}); nothing was "
                              "changed: run the command where you can write, or copy the work dir") from exc

    def _recover(self) -> None:
        """Finish a commit that a crash interrupted between its two renames."""
        for old in self.root.glob(".*.old"):
            final = self.root / old.name[1:-4]
            if final.exists():
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(old, final)

    def manifest(self, stage: str) -> dict[str, Any] | None:
        """The committed manifest of ``stage``, or None if absent or unreadable."""
        path = self.stage_dir(stage) / MANIFEST
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            return None

    def changed_files(self, stage: str, manifest: dict[str, Any]) -> list[str]:
        """Files recorded in the manifest that are now missing or have another size."""
        folder = self.stage_dir(stage)
        bad = []
        for rel, size in manifest.get("files", {}).items():
            path = folder / rel
            if not path.is_file() or path.stat().st_size != size:
                bad.append(rel)
        return bad

    def prepare_tmp(self, stage: str, key: str) -> Path:
        """The stage's tmp folder, emptied; its ``.checkpoints`` survive if the key is the same
        (an interrupted run resumes from them), otherwise it starts fresh."""
        tmp = self.tmp_dir(stage)
        key_file = tmp / ".key"
        if tmp.exists() and (not key_file.exists() or key_file.read_text() != key):
            shutil.rmtree(tmp)
        elif tmp.exists():
            for item in tmp.iterdir():
                if item.name != ".checkpoints":
                    shutil.rmtree(item) if item.is_dir() else item.unlink()
        tmp.mkdir(parents=True, exist_ok=True)
        key_file.write_text(key)
        return tmp

    def commit(self, stage: str, manifest: dict[str, Any]) -> None:
        """Write the manifest last into the tmp folder, then swap it into place atomically."""
        tmp = self.tmp_dir(stage)
        shutil.rmtree(tmp / ".checkpoints", ignore_errors=True)
        (tmp / ".key").unlink(missing_ok=True)
        manifest["files"] = {
            str(p.relative_to(tmp)): p.stat().st_size for p in sorted(tmp.rglob("*")) if p.is_file()
        }
        save_json(tmp / MANIFEST, manifest)
        final, old = self.stage_dir(stage), self._old_dir(stage)
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)

    def invalidate(self, stage: str, reason: str) -> None:
        """Mark a committed stage stale (its artifacts are kept for inspection)."""
        path = self.stage_dir(stage) / MANIFEST
        if path.exists():
            manifest = json.loads(path.read_text())
            manifest["key"] = "invalid"
            manifest["invalid_reason"] = reason
            save_json(path, manifest)

    def record_failure(self, stage: str, key: str, message: str, log: str) -> None:
        save_json(self.failure_file(stage), {"key": key, "error": message, "time": time.time()})
        self.log_file(stage).parent.mkdir(parents=True, exist_ok=True)
        self.log_file(stage).write_text(log)

    def failure(self, stage: str) -> dict[str, Any] | None:
        try:
            return json.loads(self.failure_file(stage).read_text())
        except (OSError, json.JSONDecodeError):
            return None

    def clear_failure(self, stage: str) -> None:
        self.failure_file(stage).unlink(missing_ok=True)
