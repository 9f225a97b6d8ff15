"""Synthetic dynamic scenes with exact ground truth (``dynrec synth``).

A textured room with crates and an articulated, textured figure (a kinematic tree of
rigid boxes, one arm moving fast), seen by a moving monocular camera and by static
held-out cameras. :func:`generate` writes the training video and every ground-truth
artifact; the format is in ``docs/synth-format.md``.
"""

from dynrec.synth.generate import generate
from dynrec.synth.presets import PRESETS, SynthPreset

__all__ = ["PRESETS", "SynthPreset", "generate"]
