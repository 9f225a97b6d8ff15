"""DAVIS 2016 / 2017 (Perazzi et al. 2016, Pont-Tuset et al. 2017), as read by the official
toolkit (github.com/davisvideochallenge/davis2017-evaluation: ``davis2017/davis.py``).

Layout (``SRC`` is the DAVIS root)::

    JPEGImages/<res>/<seq>/00000.jpg ...     res = 480p | Full-Resolution
    Annotations/<res>/<seq>/00000.png ...    indexed ('P') PNGs: 0 background, k = object k
                                             (DAVIS 2016: 0 / 255 grey PNGs)
    ImageSets/2017/{train,val,test-dev}.txt  sequence names per split (2016: ImageSets/480p/*.txt)

No cameras or depth. The masks artifact is the union of all annotated objects (value > 0,
the toolkit's ``all_masks`` merged), or only the objects named with ``objects``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dynrec.artifacts import Frames
from dynrec.datasets.io import listing, need, per_frame_files, read_image_raw, read_sequence
from dynrec.datasets.scene import ImportedScene
from dynrec.errors import DynrecError

FORMAT = "davis"
RESOLUTIONS = ("480p", "Full-Resolution")
FPS = 24.0  # DAVIS videos are 24 fps (Perazzi et al. 2016, Sec. 3)


def _split_of(root: Path, seq: str) -> str:
    """The split files that list ``seq`` (``2017/val``), or ``unlisted``."""
    found = []
    sets = root / "ImageSets"
    if sets.is_dir():
        for path in sorted(sets.rglob("*.txt")):
            names = {line.split()[0].split("/")[-1] for line in path.read_text().splitlines() if line.strip()}
            if seq in names:
                found.append(f"{path.parent.name}/{path.stem}")
    return ", ".join(found) if found else "unlisted"


def convert(src: Path, *, resolution: str | None = None, scene: str | None = None,
            objects: str = "") -> ImportedScene:
    """Read sequence ``scene`` of the DAVIS root ``src`` at ``resolution`` (default ``480p``);
    ``objects`` ("1,3") keeps only those annotated objects in the masks (default: all)."""
    try:
        ids = tuple(int(o) for o in objects.split(",") if o.strip())
    except ValueError:
        raise DynrecError(f"davis: --option objects= expects object ids like 1,2, got {objects!r}") from None
    res = resolution or "480p"
    if res not in RESOLUTIONS:
        raise DynrecError(f"davis: resolution must be one of {', '.join(RESOLUTIONS)}, got {res!r}")
    images_root = need(src / "JPEGImages" / res, "DAVIS", f"JPEGImages/{res}/<sequence>/*.jpg")
    _, files, images = read_sequence(images_root, scene, FORMAT, "*.jpg", "a video of *.jpg frames")
    T, H, W = images.shape[:3]
    missing: list[str] = []
    masks = None
    ann = src / "Annotations" / res / scene
    if not ann.is_dir():
        missing.append(f"masks: no {ann}")
    else:
        pngs, absent = per_frame_files(ann, files, ".png")
        if len(absent) == T:
            missing.append(f"masks: {ann} has no annotation of the frames")
        elif absent:
            missing.append(f"masks: {len(absent)} of {T} frames are not annotated ({listing(absent)}), "
                           f"e.g. a test-dev sequence; the JPEG frames are {T}, the annotations {T - len(absent)}: "
                           "masks not imported")
        else:
            labels = np.stack([read_image_raw(p) for p in pngs])
            labels = labels[..., 0] if labels.ndim == 4 else labels
            if labels.shape != (T, H, W):
                raise DynrecError(f"{ann}: annotations are {labels.shape[2]}x{labels.shape[1]} but the frames "
                                  f"{W}x{H}")
            masks = np.isin(labels, ids) if ids else labels > 0
    frames = Frames(images, FPS, np.arange(T), f"davis {src} {res}/{scene}")
    info = {"resolution": res, "source": str(src), "objects": list(ids) or "all", "units": None}
    return ImportedScene(FORMAT, scene, _split_of(src, scene), frames, masks=masks, info=info, missing=missing)
