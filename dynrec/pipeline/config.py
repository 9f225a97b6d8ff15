"""Resolved configuration: one Params dataclass per stage, plus run and input settings.

Resolution order (later wins), every value remembering where it came from
(:attr:`Config.sources`, shown by ``dynrec config show``):

1. each stage's Params defaults;
2. ``WORK/dynrec.toml`` when it exists (the settings of earlier runs and the user's edits); a
   setting this version no longer knows (renamed or removed) is dropped with a warning;
3. ``--preset NAME``: on a new work dir, on every stage; on an existing one, on the stages of
   the command only (``preprocess``: the preprocessing stages, ``reconstruct``: recon). Every
   field any preset sets takes NAME's value or its default, so ``--preset default`` undoes
   ``--preset tiny``; nothing else changes;
4. the ``--config`` file, then ``--set stage.field=value`` overrides.

Every value is then checked (types while reading; ranges and choices by each stage's
``check``) before anything is written; the result is written back to ``WORK/dynrec.toml``
only once the command has succeeded.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tomllib
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from dynrec.errors import DynrecError
from dynrec.stages.base import StageSpec

PRESETS = ("default", "tiny")
DEVICES = ("auto", "cpu", "cuda")


@dataclass
class RunParams:
    """Settings of the whole run: ``device`` is auto | cpu | cuda; ``weights_dir`` the folder
    of learned-backend weights searched first (then ``$DYNREC_WEIGHTS`` and the hub caches;
    not part of any stage's key: the model id is)."""

    device: str = "auto"
    weights_dir: str | None = None


@dataclass
class InputParams:
    """The input video (or image folder) and an optional ground-truth scene."""

    source: str | None = None
    gt: str | None = None


@dataclass
class Config:
    stages: dict[str, Any]
    run: RunParams = field(default_factory=RunParams)
    input: InputParams = field(default_factory=InputParams)
    #: ``"section.field"`` -> where its value came from (absent: the default).
    sources: dict[str, str] = field(default_factory=dict)

    def section(self, name: str) -> Any:
        if name == "run":
            return self.run
        if name == "input":
            return self.input
        if name in self.stages:
            return self.stages[name]
        known = ", ".join(["input", "run", *self.stages])
        raise DynrecError(f"unknown config section '{name}'; known: {known}")

    def sections(self) -> list[tuple[str, Any]]:
        return [("input", self.input), ("run", self.run), *self.stages.items()]

    def to_dict(self) -> dict[str, Any]:
        return {name: {k: v for k, v in dataclasses.asdict(obj).items() if v is not None}
                for name, obj in self.sections()}

    def save(self, path: Path) -> None:
        """Write ``path`` whole or not at all (a temporary file renamed over it)."""
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            tmp.write_text(tomli_w.dumps(self.to_dict()))
            os.replace(tmp, path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise DynrecError(f"cannot write {path}: {exc.strerror or exc}") from exc


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Convert ``value`` (TOML value or command-line string) to the type ``hint``."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None or isinstance(value, str) and value.lower() in ("none", "null", ""):
            return None
        return _coerce(value, args[0], where)
    if origin is dict:
        _, inner = typing.get_args(hint) or (str, str)
        if isinstance(value, str):
            pairs = [item.split(":", 1) for item in value.split(",") if item.strip()]
            if any(len(p) != 2 for p in pairs):
                raise DynrecError(f"{where}: expected key:value,key:value, got {value!r}")
            value = {k.strip(): v.strip() for k, v in pairs}
        return {str(k): _coerce(v, inner, f"{where}.{k}") for k, v in dict(value).items()}
    if origin in (tuple, list):
        (inner, *_) = typing.get_args(hint) or (str,)
        items = value.split(",") if isinstance(value, str) else list(value)
        coerced = [_coerce(v.strip() if isinstance(v, str) else v, inner, where) for v in items]
        return tuple(coerced) if origin is tuple else coerced
    try:
        if hint is bool:
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("1", "true", "yes", "on"):
                return True
            if str(value).lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if hint is int and isinstance(value, float) and not value.is_integer():
            raise ValueError(value)
        return hint(value)
    except (TypeError, ValueError) as exc:
        raise DynrecError(f"{where}: cannot read {value!r} as {getattr(hint, '__name__', hint)}") from exc


def _apply(obj: Any, values: dict[str, Any], where: str, config: Config | None = None, section: str = "",
           source: str = "", warn: Callable[[str], None] | None = None) -> None:
    """Set ``values`` on the Params ``obj``; with ``warn``, unknown settings are reported and
    dropped instead of refused (an older ``dynrec.toml``)."""
    hints = typing.get_type_hints(type(obj))
    names = [f.name for f in dataclasses.fields(obj)]
    for key, value in values.items():
        if key not in names:
            message = f"{where}: unknown setting '{key}'; known: {', '.join(names)}"
            if warn is None:
                raise DynrecError(message)
            warn(f"{where}: setting '{key}' is not used by this version of dynrec; it is ignored and "
                 "dropped from the file on the next successful run")
            continue
        setattr(obj, key, _coerce(value, hints[key], f"{where}.{key}"))
        if config is not None:
            config.sources[f"{section}.{key}"] = source


def _apply_tree(config: Config, tree: dict[str, Any], where: str, source: str,
                warn: Callable[[str], None] | None = None) -> None:
    for section, values in tree.items():
        if not isinstance(values, dict):
            raise DynrecError(f"{where}: '{section}' must be a table of settings")
        try:
            obj = config.section(section)
        except DynrecError as exc:
            if warn is None:
                raise DynrecError(f"{where}: {exc}") from exc
            warn(f"{where}: section [{section}] is not used by this version of dynrec; it is ignored")
            continue
        _apply(obj, values, f"{where} [{section}]", config, section, source, warn)


def _read_toml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise DynrecError(f"config file not found: {path}")
    try:
        return tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise DynrecError(f"config file {path} is not valid TOML: {exc}") from exc


def parse_set(item: str) -> tuple[str, str, str]:
    """Split ``stage.field=value``."""
    if "=" not in item or "." not in item.split("=", 1)[0]:
        raise DynrecError(f"--set expects stage.field=value, got '{item}'")
    lhs, value = item.split("=", 1)
    section, name = lhs.split(".", 1)
    return section.strip(), name.strip(), value.strip()


def resolve(
    specs: list[StageSpec],
    saved: Path | None = None,
    preset: str | None = None,
    config_file: Path | None = None,
    sets: list[str] | None = None,
    scope: Sequence[str] | None = None,
    warn: Callable[[str], None] | None = None,
    check: bool = True,
) -> Config:
    """Build the config in the documented order; errors name the offending setting.

    ``scope``: the stages a preset applies to when ``saved`` exists (None: all); ``warn`` receives the warnings
    about an older saved file; ``check`` runs every stage's range / choice checks."""
    config = Config(stages={s.name: s.params() for s in specs})
    if preset is not None and preset not in PRESETS:
        raise DynrecError(f"unknown preset '{preset}'; known: {', '.join(PRESETS)}")
    if saved is not None and saved.is_file():
        _apply_tree(config, _read_toml(saved), str(saved), saved.name, warn or (lambda message: None))
    if preset is not None:
        fresh = saved is None or not saved.is_file()  # a new work dir: the preset sets every stage
        for spec in specs:
            if fresh or scope is None or spec.name in scope:
                _apply(config.stages[spec.name], preset_values(spec, preset), f"preset {preset} [{spec.name}]",
                       config, spec.name, f"preset {preset}")
    if config_file is not None:
        _apply_tree(config, _read_toml(config_file), str(config_file), f"--config {config_file.name}")
    for item in sets or []:
        section, name, value = parse_set(item)
        _apply(config.section(section), {name: value}, f"--set {section}", config, section, "command line")
    if check:
        try:
            check_config(config, specs)
        except DynrecError as exc:
            if saved is None or not saved.is_file():
                raise
            raise DynrecError(f"{exc} (`dynrec config show {saved.parent}` says where each value came from; "
                              f"`dynrec config reset {saved.parent} STAGE` restores a stage's defaults)") from exc
    return config


def check_config(config: Config, specs: list[StageSpec]) -> None:
    """Ranges and choices of every setting (each stage's ``check``), before anything runs."""
    if config.run.device not in DEVICES:
        raise DynrecError(f"run.device must be one of {', '.join(DEVICES)}, got '{config.run.device}'")
    for spec in specs:
        spec.check(config.stages[spec.name])


def preset_values(spec: StageSpec, preset: str) -> dict[str, Any]:
    """What ``--preset preset`` sets on ``spec``'s params: every field some preset names, at
    this preset's value or else the field's default."""
    presets = spec_presets(spec)
    defaults = spec.params()
    fields = dict.fromkeys(k for values in presets.values() for k in values)
    chosen = presets.get(preset, {})
    return {k: chosen.get(k, getattr(defaults, k)) for k in fields}


def spec_presets(spec: StageSpec) -> dict[str, dict[str, Any]]:
    """Preset overrides a stage's Params class declares as ``PRESETS`` (name -> field values)."""
    return getattr(spec.params, "PRESETS", {})
