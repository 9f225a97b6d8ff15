"""Typed artifacts: the only thing stages share."""

from dynrec.artifacts.types import (
    Cameras,
    Depth,
    Frames,
    Keypoints,
    Lift,
    Masks,
    SparsePoints,
    Tracks,
)

__all__ = ["Cameras", "Depth", "Frames", "Keypoints", "Lift", "Masks", "SparsePoints", "Tracks"]
