"""Config resolution: defaults, presets, files, --set, persistence in WORK/dynrec.toml."""

from __future__ import annotations

import pytest
from toystages import SPECS

from dynrec.errors import DynrecError
from dynrec.pipeline.config import parse_set, resolve
from dynrec.pipeline.registry import REGISTRY


def test_set_coerces_to_field_types():
    c = resolve(SPECS, sets=["a.scale=2.5", "a.n=7", "c.power=3", "run.device=cpu"])
    assert c.stages["a"].scale == 2.5 and c.stages["a"].n == 7 and c.stages["c"].power == 3
    assert c.run.device == "cpu"


@pytest.mark.parametrize("item, message", [
    ("a.nope=1", "unknown setting 'nope'"),
    ("zz.n=1", "unknown config section 'zz'"),
    ("a.n=1.5", "cannot read '1.5' as int"),
    ("a.n", "stage.field=value"),
    ("run.device=tpu", "run.device must be one of"),
])
def test_bad_settings_are_named(item, message):
    with pytest.raises(DynrecError, match=message):
        resolve(SPECS, sets=[item])


def test_optional_and_preset_fields():
    c = resolve(REGISTRY, preset="tiny", sets=["frames.stride=2"])
    assert c.stages["frames"].long_side == 128 and c.stages["frames"].stride == 2
    c = resolve(REGISTRY, sets=["frames.max_frames=none"])
    assert c.stages["frames"].max_frames is None
    with pytest.raises(DynrecError, match="unknown preset 'huge'"):
        resolve(REGISTRY, preset="huge")


def test_saved_config_is_the_base_and_files_override(tmp_path):
    saved = tmp_path / "dynrec.toml"
    resolve(SPECS, sets=["a.scale=3"]).save(saved)
    assert resolve(SPECS, saved=saved).stages["a"].scale == 3.0
    assert resolve(SPECS, saved=saved, sets=["a.n=5"]).stages["a"].scale == 3.0
    extra = tmp_path / "extra.toml"
    extra.write_text("[b]\noffset = 4.0\n")
    c = resolve(SPECS, saved=saved, config_file=extra)
    assert c.stages["b"].offset == 4.0 and c.stages["a"].scale == 3.0  # a file overrides the saved base
    extra.write_text("[b\n")
    with pytest.raises(DynrecError, match="not valid TOML"):
        resolve(SPECS, config_file=extra)


def test_parse_set_keeps_equals_in_value():
    assert parse_set("input.source=/a=b/c.mp4") == ("input", "source", "/a=b/c.mp4")
