"""frames: decode a video (PyAV) or read an image folder; subsample, cap, resize; write PNGs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import av
import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from dynrec.artifacts import Frames
from dynrec.errors import DynrecError
from dynrec.stages.base import StageContext, StageSpec, check_fields

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
MIN_FRAMES = 2


@dataclass
class FramesParams:
    """``stride``: keep every n-th frame; ``max_frames``: cap after striding;
    ``long_side``: resize so the longer image side has this many pixels (None = keep);
    ``fps``: frame rate of an image folder (videos use their own); ``dark``: frames whose
    mean grey level (0-255) is below this are dropped (0 = keep all); ``blurred``: frames
    whose sharpness (variance of the Laplacian) is below this fraction of the median frame's
    are dropped (0 = keep all). Dropped frames are listed in the manifest and warned about."""

    stride: int = 1
    max_frames: int | None = None
    long_side: int | None = None
    fps: float = 30.0
    dark: float = 10.0
    blurred: float = 0.2

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"tiny": {"long_side": 128, "max_frames": 16}}


def target_size(width: int, height: int, long_side: int | None) -> tuple[int, int]:
    """Output (width, height) keeping the aspect ratio; never upsamples."""
    if long_side is None or long_side >= max(width, height):
        return width, height
    scale = long_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _video_frames(path: Path):
    """Yield RGB frames [H, W, 3] uint8 of a video and return its fps through the first item."""
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, UnicodeDecodeError) as exc:
        raise DynrecError(f"{path} is not a readable video ({getattr(exc, 'strerror', None) or exc})") from exc
    with container:
        if not container.streams.video:
            raise DynrecError(f"{path} has no video stream")
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or 30.0)
        yield fps
        try:
            for frame in container.decode(stream):
                yield frame.to_ndarray(format="rgb24")
        except av.error.FFmpegError:
            return  # a truncated tail: keep what decoded; the frame count check follows


#: FFmpeg demuxers / codecs that open files which are not videos (a text file becomes a "video"
#: of rendered characters through the ``tty`` demuxer).
NOT_VIDEO = {"tty": "a text file", "ansi": "a text file", "lrc": "lyrics", "srt": "subtitles",
             "webvtt": "subtitles", "ass": "subtitles"}
#: A demuxed frame count under this fraction of the declared one is warned about.
SHORT_FRACTION = 0.9


@dataclass
class Probe:
    """What :func:`probe` found: ``kind`` "video" or "images"; ``format`` the container (or
    image) format; ``codec``; ``frames`` the frames present (video packets or images);
    ``declared`` the count the container states (None when it states none); ``duration_s``;
    ``width`` x ``height``."""

    kind: str
    format: str
    codec: str
    frames: int
    declared: int | None
    duration_s: float | None
    width: int
    height: int

    def describe(self) -> str:
        if self.kind == "images":
            return f"{self.frames} {self.format} images of {self.width}x{self.height}"
        dur = f", {self.duration_s:.1f} s" if self.duration_s else ""
        return f"{self.format} video ({self.codec}), {self.frames} frames{dur}, {self.width}x{self.height}"

    @property
    def short(self) -> bool:
        """Far fewer frames present than declared (a truncated file)."""
        return self.declared is not None and self.frames < SHORT_FRACTION * self.declared


def probe(source: Path) -> Probe:
    """Check ``source`` before any stage runs, reading headers and packets but decoding nothing.

    A video: the container must open, must not be a non-video format (:data:`NOT_VIDEO`), must
    have a video stream with at least :data:`MIN_FRAMES` packets. An image folder: at least
    :data:`MIN_FRAMES` images, all of one size.

    Raises:
        DynrecError: naming the file and what is wrong with it.
    """
    if not source.exists():
        raise DynrecError(f"input not found: {source}")
    if source.is_dir():
        return _probe_folder(source)
    try:
        container = av.open(str(source))
    except (av.error.FFmpegError, UnicodeDecodeError, OSError) as exc:
        raise DynrecError(f"{source} is not a readable video ({getattr(exc, 'strerror', None) or exc})") from exc
    with container:
        fmt = container.format.name.split(",")[0]
        if fmt in NOT_VIDEO:
            raise DynrecError(f"{source} is not a video: FFmpeg reads it as {NOT_VIDEO[fmt]} ('{fmt}' format)")
        if not container.streams.video:
            raise DynrecError(f"{source} has no video stream (format '{fmt}': "
                              f"{', '.join(s.type for s in container.streams) or 'no streams'})")
        stream = container.streams.video[0]
        codec = stream.codec_context.name
        if codec in NOT_VIDEO:
            raise DynrecError(f"{source} is not a video: FFmpeg reads it as {NOT_VIDEO[codec]} ('{codec}' codec)")
        rate = float(stream.average_rate or stream.guessed_rate or 0) or None
        duration = (float(stream.duration * stream.time_base) if stream.duration and stream.time_base
                    else (container.duration / 1e6 if container.duration else None))
        declared = int(stream.frames) or (round(duration * rate) if duration and rate else None)
        try:
            present = sum(1 for packet in container.demux(stream) if packet.size)
        except av.error.FFmpegError:
            present = 0
        width, height = stream.codec_context.width, stream.codec_context.height
    if present < MIN_FRAMES:
        raise DynrecError(f"{source} has {present} decodable frame(s); dynrec needs at least {MIN_FRAMES}")
    return Probe("video", fmt, codec, present, declared, duration, width, height)


def _probe_folder(folder: Path) -> Probe:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if len(files) < MIN_FRAMES:
        raise DynrecError(f"{folder} holds {len(files)} image(s) ({', '.join(IMAGE_SUFFIXES)}); "
                          f"dynrec needs at least {MIN_FRAMES}")
    sizes: dict[tuple[int, int], list[str]] = {}
    formats = set()
    for f in files:
        try:
            with Image.open(f) as im:
                sizes.setdefault(im.size, []).append(f.name)
                formats.add(im.format or f.suffix[1:])
        except (UnidentifiedImageError, OSError) as exc:
            raise DynrecError(f"{f} is not a readable image ({exc})") from exc
    if len(sizes) > 1:
        (w, h), names = max(sizes.items(), key=lambda kv: len(kv[1]))
        odd = [f"{n} ({sw}x{sh})" for (sw, sh), ns in sizes.items() if (sw, sh) != (w, h) for n in ns]
        raise DynrecError(f"{folder}: the images differ in size: {len(names)} are {w}x{h}, but "
                          f"{', '.join(odd[:5])}{' ...' if len(odd) > 5 else ''}; use images of one size")
    (w, h), = sizes
    return Probe("images", "/".join(sorted(formats)).lower(), "", len(files), None, None, w, h)


def _preflight(params: FramesParams, source: Path | None, gt: Path | None, console: Any) -> None:
    """Probe the input before any stage runs (:func:`probe`); warn when it is truncated."""
    if source is None:
        raise DynrecError("no input video: give one, e.g. `dynrec preprocess video.mp4 -o WORK`")
    found = probe(source)
    console.print(f"input: {found.describe()}", highlight=False, markup=False)
    if found.short:
        console.print(f"[yellow]warning: {source} declares {found.declared} frames but only {found.frames} "
                      "are present: the file looks truncated (an interrupted copy or download?)[/]")


def _folder_frames(path: Path, fps: float):
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    yield fps
    for f in files:
        try:
            with Image.open(f) as im:
                yield np.asarray(im.convert("RGB"))
        except (UnidentifiedImageError, OSError) as exc:
            raise DynrecError(f"{f} is not a readable image ({exc})") from exc


def read_frames(source: Path, params: FramesParams, progress=None) -> Frames:
    """Decode, subsample (``stride``, ``max_frames``) and resize (``long_side``) the input."""
    if params.stride < 1:
        raise DynrecError(f"frames.stride must be >= 1, got {params.stride}")
    if not source.exists():
        raise DynrecError(f"input not found: {source}")
    stream = _folder_frames(source, params.fps) if source.is_dir() else _video_frames(source)
    fps = next(stream)
    images, index, decoded, first = [], [], 0, None
    for i, img in enumerate(stream):
        decoded += 1
        first = first or img.shape
        if img.shape != first:
            raise DynrecError(f"{source}: frame {i} has size {img.shape[:2]}, the first {first[:2]}")
        if i % params.stride:
            continue
        if params.max_frames is not None and len(images) >= params.max_frames:
            break
        w, h = target_size(img.shape[1], img.shape[0], params.long_side)
        if (w, h) != (img.shape[1], img.shape[0]):
            img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
        images.append(img)
        index.append(i)
        if progress:
            progress("decoding", len(images), params.max_frames or 0)
    if decoded < MIN_FRAMES:
        raise DynrecError(f"{source} has {decoded} decodable frame(s); dynrec needs at least {MIN_FRAMES}")
    if len(images) < MIN_FRAMES:
        raise DynrecError(
            f"only {len(images)} frame(s) kept of {decoded} (stride {params.stride}, "
            f"max_frames {params.max_frames}); dynrec needs at least {MIN_FRAMES}"
        )
    return Frames(np.stack(images), fps / params.stride, np.asarray(index), str(source))


def frame_quality(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean grey level [T] in 0-255, sharpness [T]: variance of the Laplacian of the grey
    image) of ``images`` [T, H, W, 3] uint8."""
    grey = [cv2.cvtColor(img, cv2.COLOR_RGB2GRAY) for img in images]
    level = np.array([g.mean() for g in grey])
    sharp = np.array([cv2.Laplacian(g, cv2.CV_64F).var() for g in grey])
    return level, sharp


def drop_unusable(frames: Frames, params: FramesParams) -> tuple[Frames, dict[str, list[int]]]:
    """``frames`` without the dark and blurred ones (see :class:`FramesParams`) and the source
    indices of those dropped, by reason. Raises DynrecError when fewer than two would stay."""
    level, sharp = frame_quality(frames.images)
    dark = level < params.dark
    blurred = ~dark & (sharp < params.blurred * np.median(sharp[~dark])) if (~dark).any() else np.zeros_like(dark)
    keep = ~(dark | blurred)
    if keep.sum() < MIN_FRAMES:
        raise DynrecError(
            f"frames: {int(dark.sum())} of {len(keep)} frames are too dark (mean grey level under {params.dark:g}) "
            f"and {int(blurred.sum())} too blurred; fewer than {MIN_FRAMES} are left. Brighten the video, or keep "
            "every frame with --set frames.dark=0 --set frames.blurred=0")
    index = frames.source_index
    dropped = {"dark": index[dark].tolist(), "blurred": index[blurred].tolist()}
    return Frames(frames.images[keep], frames.fps, index[keep], frames.source), dropped


def run(ctx: StageContext, params: FramesParams) -> dict[str, Any]:
    if ctx.source is None:
        raise DynrecError("no input video: give one, e.g. `dynrec preprocess video.mp4 -o WORK`")
    frames, dropped = drop_unusable(read_frames(ctx.source, params, ctx.progress), params)
    for reason, index in dropped.items():
        if index:
            shown = ", ".join(map(str, index[:8])) + (", ..." if len(index) > 8 else "")
            ctx.console.print(f"[yellow]frames: skipped {len(index)} {reason} frame(s) (input frames {shown}); "
                              f"--set frames.{reason}=0 keeps them[/]")
    ctx.progress("writing", 0, len(frames.images))
    frames.save(ctx.out)
    T, H, W = frames.shape
    return {"count": T, "width": W, "height": H, "fps": frames.fps, "dropped": dropped}


def _check(params: FramesParams) -> None:
    check_fields("frames", params, minimum={"stride": 1, "max_frames": 1, "long_side": 16}, positive=("fps",))


STAGE = StageSpec(
    name="frames", version=2, upstream=(), params=FramesParams, run=run,
    external=lambda params, source, gt: [source] if source is not None else [], preflight=_preflight,
    summary="decode the input video into PNG frames", check=_check,
)
