"""The one parser of comma-separated option lists (--metrics, --format, --overlay)."""

from __future__ import annotations

import pytest

from dynrec.choices import parse_choices
from dynrec.errors import DynrecError
from dynrec.export.core import FORMATS, parse_formats
from dynrec.export.render import parse_overlays


def test_parse_choices_order_duplicates_all_and_errors() -> None:
    assert parse_choices(" b, A,b ", ("a", "b", "c"), "--x", "thing") == ["b", "a"]
    assert parse_choices("ALL", ("a", "b"), "--x", "thing") == ["a", "b"]
    with pytest.raises(DynrecError, match=r"^--x: unknown thing 'all'; known things: a, b$"):
        parse_choices("all", ("a", "b"), "--x", "thing", allow_all=False)
    with pytest.raises(DynrecError, match=r"^--x is empty; known things: a, b \(or 'all'\)$"):
        parse_choices(" , ", ("a", "b"), "--x", "thing")


def test_formats_and_overlays_use_it() -> None:
    assert parse_formats("all") == list(FORMATS)
    assert parse_formats("cameras, PLY,ply") == ["cameras", "ply"]
    with pytest.raises(DynrecError, match=r"^--format: unknown format 'obj'; known formats: ply, .* \(or 'all'\)$"):
        parse_formats("ply,obj")
    assert parse_overlays(None) == [] and parse_overlays("") == []
    assert parse_overlays("Skeleton,tracks") == ["skeleton", "tracks"]
    with pytest.raises(DynrecError, match=r"^--overlay: unknown overlays 'x', 'all'; known overlays: tracks, skeleton$"):
        parse_overlays("x,all")
