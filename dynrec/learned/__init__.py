"""Wrappers of the learned backends (SAM, Depth Anything V2, CoTracker3, ViTPose++, X-Pose),
as plain functions on numpy arrays. Nothing here downloads: weights are looked up by
:mod:`dynrec.learned.weights`. Submodules import transformers / torch.hub lazily."""

from dynrec.learned.weights import WeightsMissing, resolve_model

__all__ = ["WeightsMissing", "resolve_model"]
