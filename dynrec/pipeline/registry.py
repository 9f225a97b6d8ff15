"""The stage registry, in an order where upstream stages come first."""

from __future__ import annotations

from dynrec.stages import cameras, depth, frames, keypoints, lift, masks, tracks
from dynrec.stages.base import StageSpec

REGISTRY: list[StageSpec] = [frames.STAGE, depth.STAGE, tracks.STAGE, masks.STAGE, cameras.STAGE, keypoints.STAGE,
                            lift.STAGE]

#: What ``dynrec preprocess`` brings up to date.
PREPROCESS: list[str] = ["frames", "depth", "tracks", "masks", "cameras", "keypoints", "lift"]

#: Stages with a ``gt`` backend; ``--gt SCENE`` switches them to it.
GT_STAGES: tuple[str, ...] = ("masks", "depth", "tracks", "cameras", "keypoints")
