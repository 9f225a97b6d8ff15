"""Stable content hashes for stage keys."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from dynrec.errors import DynrecError


def hash_json(obj: Any) -> str:
    """sha256 of the canonical JSON of ``obj`` (sorted keys)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def hash_path(path: Path, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes, or of a folder's relative names and file bytes (sorted)."""
    h = hashlib.sha256()
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
    elif path.is_file():
        files = [path]
    else:
        raise DynrecError(f"input not found: {path}")
    for f in files:
        h.update(str(f.relative_to(path) if path.is_dir() else f.name).encode())
        with f.open("rb") as fh:
            while block := fh.read(chunk):
                h.update(block)
    return h.hexdigest()
