"""What ``reconstruct`` optimises: canonical Gaussians, the HiMoR motion tree, skinning, losses."""

from dynrec.model.gaussians import GaussianLRs, Gaussians
from dynrec.model.himor import (
    GlobalBases,
    MotionLRs,
    MotionModel,
    MotionTree,
    TreeConfig,
    curve_distance,
    knn_curve,
)
from dynrec.model.losses import LossWeights
from dynrec.model.skinning import deform, skin_weights

__all__ = [
    "GaussianLRs",
    "Gaussians",
    "GlobalBases",
    "LossWeights",
    "MotionLRs",
    "MotionModel",
    "MotionTree",
    "TreeConfig",
    "curve_distance",
    "deform",
    "knn_curve",
    "skin_weights",
]
