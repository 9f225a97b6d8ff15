"""Validated array files: every artifact saves and loads through here.

A field spec is a dtype kind and a shape made of named dims (``"N"``, ``"T"``) and fixed
sizes. Named dims must agree across all fields of one file, so ``xy [N,T,2]`` and
``visible [N,T]`` are checked against each other. Errors name the file and the field.
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dynrec.errors import ArtifactError

Dim = int | str


@dataclass(frozen=True)
class Field:
    """Spec of one array: ``kind`` is a numpy dtype kind ('f', 'i', 'b', 'u', 'U')."""

    shape: tuple[Dim, ...]
    kind: str = "f"
    optional: bool = False


def _check(path: Path, name: str, arr: np.ndarray, spec: Field, dims: dict[str, int]) -> None:
    if arr.dtype.kind not in spec.kind:
        raise ArtifactError(path, name, f"dtype {arr.dtype} but expected kind '{spec.kind}'")
    if arr.ndim != len(spec.shape):
        raise ArtifactError(
            path, name, f"shape {tuple(arr.shape)} but expected [{', '.join(map(str, spec.shape))}]"
        )
    for axis, (size, want) in enumerate(zip(arr.shape, spec.shape)):
        if isinstance(want, int):
            if size != want:
                raise ArtifactError(
                    path, name, f"axis {axis} has size {size} but must be {want}"
                    f" (shape {tuple(arr.shape)})",
                )
        elif want in dims and dims[want] != size:
            raise ArtifactError(
                path, name, f"axis {axis} ({want}) has size {size} but other fields say {want}={dims[want]}"
            )
        else:
            dims[want] = size
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ArtifactError(path, name, "contains NaN or infinite values")


def validate(path: Path, arrays: dict[str, np.ndarray], specs: dict[str, Field]) -> dict[str, int]:
    """Check ``arrays`` against ``specs``; return the named dims, e.g. ``{"N": 1000, "T": 16}``."""
    dims: dict[str, int] = {}
    for name, spec in specs.items():
        if name not in arrays or arrays[name] is None:
            if spec.optional:
                continue
            raise ArtifactError(path, name, "missing")
        _check(path, name, np.asarray(arrays[name]), spec, dims)
    return dims


def save_npz(path: Path, arrays: dict[str, np.ndarray | None], specs: dict[str, Field]) -> None:
    """Validate and write ``arrays`` (``None`` values of optional fields are skipped)."""
    present = {k: np.asarray(v) for k, v in arrays.items() if v is not None}
    validate(path, present, specs)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial.npz")
    np.savez_compressed(tmp, **present)
    os.replace(tmp, path)


def load_npz(path: Path, specs: dict[str, Field]) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Read every field of ``specs`` from ``path``; truncated or malformed files name the field."""
    if not path.is_file():
        raise ArtifactError(path, None, "file is missing")
    arrays: dict[str, np.ndarray] = {}
    try:
        with np.load(path, allow_pickle=False) as data:
            names = set(data.files)
            for name, spec in specs.items():
                if name not in names:
                    if spec.optional:
                        continue
                    raise ArtifactError(path, name, "missing from the file")
                try:
                    arrays[name] = data[name]
                except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
                    raise ArtifactError(path, name, f"cannot be read ({exc}); the file is corrupted") from exc
    except ArtifactError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise ArtifactError(path, None, f"not a readable npz file ({exc}); it is truncated or corrupted") from exc
    dims = validate(path, arrays, specs)
    return arrays, dims


def save_json(path: Path, obj: dict[str, Any]) -> None:
    """Write JSON atomically (temp file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def load_json(path: Path, required: tuple[str, ...] = ()) -> dict[str, Any]:
    """Read a JSON object and check that ``required`` keys exist."""
    if not path.is_file():
        raise ArtifactError(path, None, "file is missing")
    try:
        obj = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(path, None, f"not valid JSON ({exc})") from exc
    if not isinstance(obj, dict):
        raise ArtifactError(path, None, "must hold a JSON object")
    for key in required:
        if key not in obj:
            raise ArtifactError(path, key, "missing")
    return obj


@contextmanager
def replacing_folder(final: Path) -> Iterator[Path]:
    """Build a folder that replaces ``final`` whole: yields a new empty ``.<name>.partial`` next
    to it; on success that replaces ``final`` (an old one is removed first), on any error it is
    removed and ``final`` is left as it was."""
    tmp = final.parent / f".{final.name}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        if final.exists():
            shutil.rmtree(final)
        tmp.replace(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
