"""Resolved configuration: one Params dataclass per stage, plus run and input settings.

Resolution order (later wins):
1. each stage's Params defaults;
2. if neither ``--preset`` nor ``--config`` is given and ``WORK/dynrec.toml`` exists: that
   file (so edits to it, and settings of earlier runs, persist); otherwise the preset
   (``default`` unless named) and then the ``--config`` file;
3. ``--set stage.field=value`` overrides.

The result is written back to ``WORK/dynrec.toml``.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
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

    def section(self, name: str) -> Any:
        if name == "run":
            return self.run
        if name == "input":
            return self.input
        if name in self.stages:
            return self.stages[name]
        known = ", ".join(["input", "run", *self.stages])
        raise DynrecError(f"unknown config section '{name}'; known: {known}")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, obj in [("input", self.input), ("run", self.run), *self.stages.items()]:
            out[name] = {k: v for k, v in dataclasses.asdict(obj).items() if v is not None}
        return out

    def save(self, path: Path) -> None:
        path.write_text(tomli_w.dumps(self.to_dict()))


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Convert ``value`` (TOML value or command-line string) to the type ``hint``."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if isinstance(value, str) and value.lower() in ("none", "null", ""):
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


def _apply(obj: Any, values: dict[str, Any], where: str) -> None:
    hints = typing.get_type_hints(type(obj))
    names = [f.name for f in dataclasses.fields(obj)]
    for key, value in values.items():
        if key not in names:
            raise DynrecError(f"{where}: unknown setting '{key}'; known: {', '.join(names)}")
        setattr(obj, key, _coerce(value, hints[key], f"{where}.{key}"))


def _apply_tree(config: Config, tree: dict[str, Any], where: str) -> None:
    for section, values in tree.items():
        if not isinstance(values, dict):
            raise DynrecError(f"{where}: '{section}' must be a table of settings")
        _apply(config.section(section), values, f"{where} [{section}]")


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
) -> Config:
    """Build the config in the documented order; errors name the offending setting."""
    config = Config(stages={s.name: s.params() for s in specs})
    if preset is not None and preset not in PRESETS:
        raise DynrecError(f"unknown preset '{preset}'; known: {', '.join(PRESETS)}")
    if preset is None and config_file is None and saved is not None and saved.is_file():
        _apply_tree(config, _read_toml(saved), str(saved))
    else:
        name = preset or "default"
        for spec in specs:
            _apply(config.stages[spec.name], spec_presets(spec).get(name, {}), f"preset {name} [{spec.name}]")
        if config_file is not None:
            _apply_tree(config, _read_toml(config_file), str(config_file))
    for item in sets or []:
        section, name, value = parse_set(item)
        _apply(config.section(section), {name: value}, f"--set {section}")
    if config.run.device not in DEVICES:
        raise DynrecError(f"run.device must be one of {', '.join(DEVICES)}, got '{config.run.device}'")
    return config


def spec_presets(spec: StageSpec) -> dict[str, dict[str, Any]]:
    """Preset overrides a stage's Params class declares as ``PRESETS`` (name -> field values)."""
    return getattr(spec.params, "PRESETS", {})
