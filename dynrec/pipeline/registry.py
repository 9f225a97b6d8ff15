"""The stage registry, in an order where upstream stages come first."""

from __future__ import annotations

from dynrec.stages import align, cameras, depth, frames, keypoints, lift, masks, recon, tracks
from dynrec.stages.base import StageSpec

REGISTRY: list[StageSpec] = [frames.STAGE, depth.STAGE, tracks.STAGE, masks.STAGE, cameras.STAGE, align.STAGE,
                            keypoints.STAGE, lift.STAGE, recon.STAGE]

#: What ``dynrec preprocess`` brings up to date.
PREPROCESS: list[str] = ["frames", "depth", "tracks", "masks", "cameras", "align", "keypoints", "lift"]

#: Stages with a ``gt`` backend; ``--gt SCENE`` switches them to it.
GT_STAGES: tuple[str, ...] = ("masks", "depth", "tracks", "cameras", "keypoints")

#: What ``dynrec reconstruct`` brings up to date.
RECONSTRUCT: list[str] = ["recon"]
