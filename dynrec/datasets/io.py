"""Small readers shared by the importers; every error names the file and what was expected."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from dynrec.errors import DynrecError


def need(path: Path, fmt: str, what: str = "") -> Path:
    """``path`` if it exists, else the error that says ``SRC`` is not ``fmt`` (or lacks ``what``)."""
    if not path.exists():
        hint = f" ({what})" if what else ""
        raise DynrecError(f"not a {fmt} scene: expected {path}{hint}")
    return path


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DynrecError(f"{path} is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DynrecError(f"{path} is not valid JSON ({exc})") from exc


def _read_image(path: Path, mode: str | None) -> np.ndarray:
    """The image at ``path`` converted to ``mode`` (None: the stored values); errors name it."""
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert(mode) if mode else im)
    except FileNotFoundError:
        raise DynrecError(f"image {path} is missing") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise DynrecError(f"{path} is not a readable image ({exc})") from exc


def read_rgb(path: Path) -> np.ndarray:
    """[H, W, 3] uint8 (an alpha channel is dropped)."""
    return _read_image(path, "RGB")


def read_image_raw(path: Path) -> np.ndarray:
    """The stored values, unconverted: palette indices of a 'P' PNG, 16-bit depth, grey levels."""
    return _read_image(path, None)


def read_sequence(images_root: Path, scene: str | None, fmt: str, pattern: str,
                  expected: str) -> tuple[Path, list[Path], np.ndarray]:
    """The sequence ``scene`` of a dataset with one folder of frames per sequence
    (``images_root/<scene>/<pattern>``, Sintel, DAVIS): ``(folder, files, images [T, H, W, 3])``,
    files in name order.

    Raises:
        DynrecError: no ``scene`` given or no such folder (the message lists the sequences there),
            or fewer than 2 frames (``expected`` says what was looked for).
    """
    seqs = sorted(p.name for p in images_root.iterdir() if p.is_dir())
    if scene is None:
        raise DynrecError(f"{fmt}: name the sequence with --scene (in {images_root}: {listing(seqs, 8)})")
    folder = images_root / scene
    if not folder.is_dir():
        raise DynrecError(f"{fmt}: no sequence {scene!r} in {images_root} (there: {listing(seqs, 8)})")
    files = sorted(folder.glob(pattern))
    if len(files) < 2:
        raise DynrecError(f"{folder}: {len(files)} frame(s); expected {expected}")
    return folder, files, np.stack([read_rgb(f) for f in files])


def per_frame_files(folder: Path, frames: list[Path], suffix: str) -> tuple[list[Path], list[str]]:
    """``folder/<frame stem><suffix>`` for each of ``frames``, and the stems of those absent."""
    paths = [folder / f"{f.stem}{suffix}" for f in frames]
    return paths, [p.stem for p in paths if not p.is_file()]


def read_depth_png(path: Path, scale: float) -> np.ndarray:
    """A 16-bit depth PNG [H, W] divided by ``scale`` (TUM / Bonn: 5000 per metre), 0 = no data."""
    raw = cv2.imread(str(path), cv2.IMREAD_ANYDEPTH)
    if raw is None:
        raise DynrecError(f"depth image {path} is missing or unreadable")
    if raw.dtype != np.uint16:
        raise DynrecError(f"{path}: depth must be a 16-bit PNG, got {raw.dtype}")
    return raw.astype(np.float32) / scale


def resize_rgb(img: np.ndarray, width: int, height: int) -> np.ndarray:
    if img.shape[:2] == (height, width):
        return img
    return cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA)


def listing(names: list[str], limit: int = 5) -> str:
    """``a, b, c, ...`` for messages."""
    return ", ".join(names[:limit]) + (", ..." if len(names) > limit else "")
