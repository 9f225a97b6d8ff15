"""Named sizes of a synthetic scene (``dynrec synth --preset``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SynthPreset:
    """How big and how fast a synthetic scene is.

    ``focal`` is the focal length in units of the image width. The fast joint (the right
    shoulder) swings with ``fast_amplitude`` radians at ``fast_omega`` radians per frame and
    the right elbow with ``elbow_amplitude`` at the same rate; ``min_speed_px`` is the
    peak image speed (pixels per frame, training view) that some keypoint is guaranteed
    to reach; :func:`dynrec.synth.generate` checks it on the keypoints it writes.
    """

    name: str
    frames: int
    width: int
    height: int
    fps: float = 10.0
    focal: float = 0.9
    fast_amplitude: float = 0.8
    fast_omega: float = 0.35
    elbow_amplitude: float = 0.5
    fg_tracks: int = 900
    bg_tracks: int = 300
    supersample: int = 2
    heldout: int = 2
    min_speed_px: float = 0.0

    @property
    def focal_px(self) -> float:
        """Focal length in pixels."""
        return self.focal * self.width


PRESETS: dict[str, SynthPreset] = {
    "tiny": SynthPreset("tiny", frames=16, width=64, height=48),
    "small": SynthPreset("small", frames=48, width=160, height=120, min_speed_px=5.0),
    "fast": SynthPreset(
        "fast",
        frames=48,
        width=160,
        height=120,
        fast_amplitude=1.0,
        fast_omega=0.6,
        elbow_amplitude=0.7,
        min_speed_px=10.0,
    ),
}
