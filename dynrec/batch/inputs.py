"""What ``dynrec batch`` runs: one :class:`Job` per input video, found in its INPUTS.

An input is

* a video file (``VIDEO_SUFFIXES``);
* an image folder (a folder holding image files: one sequence, frames in name order);
* a synth scene (a folder holding ``scene.json``): its ``video.mp4``, with ``--gt SCENE``
  when ``scene_gt`` is set;
* a folder of any of these, searched recursively (hidden folders and dynrec work dirs are
  skipped);
* a manifest file (``.txt`` / ``.list`` / ``.manifest``): one video per line, written as
  ``PATH [--gt SCENE] [--set stage.field=value ...] [--name NAME]`` (shell quoting; ``#``
  starts a comment; relative paths are relative to the manifest's folder).

Each job gets ``RUNS/<name>/`` as its work dir; the name is the video's stem (the folder's
name for image folders and scenes), made unique by prefixing the parent folder's name and,
if still taken, a number.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

from dynrec.errors import DynrecError
from dynrec.pipeline.config import parse_set
from dynrec.stages.frames import IMAGE_SUFFIXES

VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
MANIFEST_SUFFIXES = (".txt", ".list", ".manifest")


@dataclass
class Job:
    """One video of a batch: ``source`` (video or image folder), its work dir ``work``, an
    optional ground-truth scene and ``--set`` overrides of its own (applied after the batch's);
    ``origin`` says where it was listed (``manifest.txt:3``) for error messages."""

    name: str
    source: Path
    work: Path
    gt: Path | None = None
    sets: list[str] = field(default_factory=list)
    origin: str = ""


@dataclass
class _Found:
    source: Path
    gt: Path | None = None
    sets: list[str] = field(default_factory=list)
    name: str | None = None
    origin: str = ""


def _is_images(folder: Path) -> bool:
    return any(p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() for p in folder.iterdir())


def _is_scene(folder: Path) -> bool:
    return (folder / "scene.json").is_file() and (folder / "video.mp4").is_file()


def _walk(folder: Path, scene_gt: bool, skip: Path) -> list[_Found]:
    """Videos, image folders and scenes under ``folder`` (name order)."""
    if folder.resolve() == skip or (folder / ".dynrec").is_dir():
        return []
    if _is_scene(folder):
        return [_Found(folder / "video.mp4", folder if scene_gt else None, name=folder.name, origin=str(folder))]
    if _is_images(folder):
        return [_Found(folder, name=folder.name, origin=str(folder))]
    found = []
    for p in sorted(folder.iterdir()):
        if p.name.startswith("."):
            continue
        if p.is_dir():
            found += _walk(p, scene_gt, skip)
        elif p.suffix.lower() in VIDEO_SUFFIXES:
            found.append(_Found(p, origin=str(p)))
    return found


def parse_manifest(path: Path) -> list[_Found]:
    """The lines of a manifest file; a line that does not parse is an error naming it."""
    found = []
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        where = f"{path}:{number}"
        try:
            words = shlex.split(raw, comments=True)
        except ValueError as exc:
            raise DynrecError(f"manifest line {where} does not parse ({exc}): {raw.strip()}") from exc
        if not words:
            continue
        item = _Found(_resolve(path, words[0]), origin=where)
        rest = iter(words[1:])
        for word in rest:
            flag, _, inline = word.partition("=") if word.startswith("--") else (word, "", "")
            if flag not in ("--gt", "--set", "--name"):
                raise DynrecError(f"manifest line {where}: unknown option '{word}'; a line is "
                                  "PATH [--gt SCENE] [--set stage.field=value ...] [--name NAME]")
            value = inline or next(rest, None)
            if value is None:
                raise DynrecError(f"manifest line {where}: {flag} needs a value")
            if flag == "--gt":
                item.gt = _resolve(path, value)
            elif flag == "--name":
                item.name = value
            else:
                try:
                    parse_set(value)
                except DynrecError as exc:
                    raise DynrecError(f"manifest line {where}: {exc}") from exc
                item.sets.append(value)
        if not item.source.exists():
            raise DynrecError(f"manifest line {where}: input not found: {item.source}")
        found.append(item)
    return found


def _resolve(manifest: Path, value: str) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else manifest.parent / p


def discover(inputs: list[Path], runs: Path, scene_gt: bool = False) -> list[Job]:
    """One job per video found in ``inputs``, each with its work dir under ``runs``.

    Raises:
        DynrecError: an input that does not exist, a manifest line that does not parse, or no
            video found at all (the message lists what was searched).
    """
    runs = skip = runs.resolve()  # workers may run elsewhere: every path they get is absolute
    found: list[_Found] = []
    for item in inputs:
        if not item.exists():
            raise DynrecError(f"input not found: {item}")
        if item.is_dir():
            found += _walk(item, scene_gt, skip)
        elif item.suffix.lower() in MANIFEST_SUFFIXES:
            found += parse_manifest(item)
        elif item.suffix.lower() in VIDEO_SUFFIXES:
            found.append(_Found(item, origin=str(item)))
        else:
            raise DynrecError(
                f"input {item} is neither a video ({', '.join(VIDEO_SUFFIXES)}), a folder nor a manifest "
                f"({', '.join(MANIFEST_SUFFIXES)})")
    if not found:
        raise DynrecError(
            "no videos found in " + ", ".join(str(i) for i in inputs) + f" (searched for videos "
            f"{', '.join(VIDEO_SUFFIXES)}, folders of images {', '.join(IMAGE_SUFFIXES)}, synth scenes "
            f"with scene.json, and manifest files {', '.join(MANIFEST_SUFFIXES)})")
    unique = {(f.source.resolve(), f.gt and f.gt.resolve(), tuple(f.sets), f.name): f for f in found}
    return _name(list(unique.values()), runs)


def _name(found: list[_Found], runs: Path) -> list[Job]:
    jobs: list[Job] = []
    taken: set[str] = set()
    stems = [f.name or f.source.stem for f in found]
    for f, stem in zip(found, stems, strict=True):
        name = stem
        if f.name is None and stems.count(stem) > 1:
            name = f"{f.source.parent.name}-{stem}"
        base, n = name, 2
        while name in taken:
            name, n = f"{base}-{n}", n + 1
        if f.name is not None and name != f.name:
            raise DynrecError(f"{f.origin}: --name {f.name} is used twice")
        taken.add(name)
        jobs.append(Job(name, f.source.resolve(), runs / name,
                        None if f.gt is None else f.gt.resolve(), f.sets, f.origin))
    return jobs
