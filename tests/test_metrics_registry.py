"""The metrics registry and import hygiene of dynrec.metrics."""

from __future__ import annotations

import subprocess
import sys

import dynrec.metrics as M
from dynrec.errors import DynrecError


def test_registry_entries() -> None:
    assert set(M.METRICS) >= {
        "psnr",
        "ssim",
        "lpips",
        "mpsnr",
        "mssim",
        "mlpips",
        "clip_i",
        "clip_t",
        "fid",
        "fvd",
        "ate",
        "rpe_trans",
        "rpe_rot",
        "pck_t",
        "epe_3d",
        "jitter",
        "smoothness",
        "tc_warp",
        "tc_clip",
    }
    for name, info in M.METRICS.items():
        assert info.name == name and name.isidentifier()
        assert (
            isinstance(info.higher_is_better, bool)
            and isinstance(info.unit, str)
            and info.description
        )
        assert info.needs and all(n in M.NEEDS for n in info.needs), name
    weights = {n for i in M.METRICS.values() for n in i.needs if n.startswith("weights:")}
    assert weights == {"weights:lpips", "weights:clip", "weights:inception", "weights:i3d"}
    assert M.METRICS["psnr"].higher_is_better and not M.METRICS["ate"].higher_is_better
    assert M.METRICS["rpe_rot"].unit == "deg"


def test_errors_are_dynrec_errors() -> None:
    assert issubclass(M.WeightsMissing, M.MetricNotComputable)
    assert issubclass(M.MetricNotComputable, DynrecError)
    e = M.WeightsMissing("lpips", "alexnet-owt-7be5be79.pth", ["/a", "/b"])
    assert "alexnet-owt-7be5be79.pth" in str(e) and "/a" in str(e) and e.metric == "lpips"


def test_exports_exist() -> None:
    for name in M.__all__:
        assert hasattr(M, name), name


def test_import_is_light() -> None:
    """Importing dynrec.metrics pulls in neither torchvision, evo, lpips nor transformers."""
    code = (
        "import sys, dynrec.metrics; "
        "print(sorted(m for m in ('torchvision', 'evo', 'lpips', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
