"""Downloads: one file over HTTP(S), resumable and atomic; a Hugging Face repository.

:func:`download_file` writes ``<dest>.part`` (continued with an HTTP ``Range`` request when
it exists, e.g. after an interrupted run), checks the size the server announced and the
pinned sha256, and only then renames it to ``dest``: a file at ``dest`` is always whole and
verified. A checksum or size mismatch deletes the ``.part`` file.
"""

from __future__ import annotations

import hashlib
import os
import re
import urllib.error
import urllib.request
from http.client import HTTPException
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from dynrec import __version__
from dynrec.errors import DynrecError

CHUNK = 1 << 20


class DownloadFailed(DynrecError):
    """A download did not complete or did not verify; nothing was left at the destination."""


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
    return h.hexdigest()


def _total(resp, offset: int) -> int | None:
    """The whole file's size from ``Content-Range: bytes a-b/TOTAL`` or ``Content-Length``."""
    rng = resp.headers.get("Content-Range")
    if rng and (m := re.search(r"/(\d+)\s*$", rng)):
        return int(m.group(1))
    length = resp.headers.get("Content-Length")
    return offset + int(length) if length is not None else None


def download_file(url: str, dest: Path, sha256: str | None = None, console: Console | None = None,
                  label: str = "", timeout: float = 30.0) -> Path:
    """Fetch ``url`` to ``dest`` (see the module docstring); returns ``dest``.

    Raises:
        DownloadFailed: network error or interruption (the ``.part`` file is kept so the next
            call resumes), or a size / sha256 mismatch (the ``.part`` file is deleted).
    """
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": f"dynrec/{__version__}", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    label = label or dest.name
    total: int | None = None
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code != 416 or not offset:  # 416: the .part already holds the whole file
            raise DownloadFailed(f"{label}: {url} answered HTTP {exc.code} {exc.reason}") from exc
        resp = None
    except (urllib.error.URLError, OSError, HTTPException) as exc:
        raise DownloadFailed(f"{label}: cannot reach {url} ({getattr(exc, 'reason', exc)})") from exc
    if resp is not None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with resp:
            if offset and resp.status != 206:
                offset = 0  # the server ignored Range: start again
            total = _total(resp, offset)
            columns = (TextColumn(f"  {label}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                       TimeRemainingColumn())
            with (Progress(*columns, console=console or Console(stderr=True), transient=True) as bar,
                  open(part, "ab" if offset else "wb") as f):
                task = bar.add_task(label, total=total, completed=offset)
                try:
                    while block := resp.read(CHUNK):
                        f.write(block)
                        bar.advance(task, len(block))
                except (OSError, HTTPException) as exc:
                    f.flush()
                    raise DownloadFailed(
                        f"{label}: download interrupted after {part.stat().st_size} of {total or '?'} bytes "
                        f"({type(exc).__name__}); run the same command again to resume") from exc
    got = part.stat().st_size
    if total is not None and got < total:
        raise DownloadFailed(f"{label}: download interrupted after {got} of {total} bytes; run the same "
                             "command again to resume")
    if total is not None and got > total:
        part.unlink()
        raise DownloadFailed(f"{label}: got {got} bytes, the server announced {total}; the file was deleted")
    if sha256 is not None:
        digest = sha256_of(part)
        if not digest.startswith(sha256.lower()):
            part.unlink()
            raise DownloadFailed(f"{label}: checksum mismatch for {url}: sha256 {digest}, expected "
                                 f"{sha256}{'...' if len(sha256) < 64 else ''}; the file was deleted")
    os.replace(part, dest)
    return dest


def download_hf(repo: str, dest: Path, patterns: tuple[str, ...]) -> Path:
    """``snapshot_download`` of the Hugging Face model ``repo`` into ``dest`` (files matching
    ``patterns``); ``HF_ENDPOINT`` is read now, so a mirror set after import is honoured.
    huggingface_hub writes ``.incomplete`` files, resumes them and renames when whole."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError as exc:
        raise DownloadFailed(f"{repo}: huggingface_hub is not installed (pip install huggingface_hub)") from exc
    endpoint = os.environ.get("HF_ENDPOINT") or None
    try:
        path = snapshot_download(repo, local_dir=str(dest), allow_patterns=list(patterns), endpoint=endpoint)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise DownloadFailed(f"{repo}: download from {endpoint or 'huggingface.co'} failed "
                             f"({type(exc).__name__}: {first})") from exc
    if not (Path(path) / "config.json").is_file():
        raise DownloadFailed(f"{repo}: the downloaded snapshot has no config.json ({path})")
    return Path(path)


def download_torchhub(repo: str) -> Path:
    """Fetch a torch.hub repository's code (``torch.hub.list`` caches it under ``$TORCH_HOME/hub``)."""
    import torch

    try:
        torch.hub.list(repo, trust_repo=True, verbose=False)
    except Exception as exc:
        raise DownloadFailed(f"{repo}: torch.hub could not fetch the code ({type(exc).__name__}: {exc})") from exc
    return Path(torch.hub.get_dir())
