"""The X-Pose adapter (dynrec.learned.xpose) on a fake X-Pose clone built in a temp folder:
``models.build_model`` gives a stand-in with X-Pose's ``forward(samples, targets)`` and output
keys (three detections at known normalised boxes / keypoints / scores), ``util.config.Config``,
``predefined_keypoints``, a torch/PIL ``transforms`` with X-Pose's names, a checkpoint, and a
fake OpenAI ``clip`` module with ``load`` / ``tokenize``'s call signatures."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import importlib
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from dynrec.errors import DynrecError
from dynrec.learned.xpose import detect_keypoints_xpose, load_xpose, xpose_keypoint_set

H, W = 30, 40  # X-Pose resizes to 800 x 1066
# three detections, normalised: xyxy boxes, scores, keypoint j of query q at KPT0[q] + j * STEP
BOXES = [(0.05, 0.1, 0.45, 0.9), (0.55, 0.1, 0.95, 0.9), (0.0, 0.0, 1.0, 1.0)]
SCORES = [0.9, 0.6, 0.05]  # the last one is under the 0.1 box threshold
KPT0 = [(0.2, 0.3), (0.7, 0.3), (0.5, 0.5)]
STEP = (0.05, 0.1)
CLONE_MODULES = {"models", "util", "transforms", "predefined_keypoints", "clip"}

PREDEFINED = """
tiny = {"keypoints": ["head", "left_hand", "right_hand"], "skeleton": [[1, 2], [1, 3]]}
zero_based = {"keypoints": ["a", "b", "c"], "skeleton": [[0, 1], [2, 1]]}
"""

CONFIG = """
import runpy
import types


class Config(types.SimpleNamespace):
    @classmethod
    def fromfile(cls, filename):
        values = runpy.run_path(filename)
        return cls(**{k: v for k, v in values.items() if not k.startswith("_")})
"""

MODELS = """
import math

import clip  # as X-Pose's models/UniPose/unipose.py
import torch
from torch import nn

BOXES, SCORES, KPT0, STEP = @CONSTANTS@


class FakeXPose(nn.Module):
    def __init__(self, args):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))
        self.num_body_points = args.num_body_points
        self.calls = []

    def forward(self, samples, targets=None, **kw):
        self.calls.append((tuple(samples.shape), targets))
        K, Q = self.num_body_points, len(BOXES)
        logits = torch.full((1, Q, 256), float("-inf"))
        boxes = torch.zeros(1, Q, 4)
        kpts = torch.zeros(1, Q, 3 * K)
        for q, ((x0, y0, x1, y1), s, (kx, ky)) in enumerate(zip(BOXES, SCORES, KPT0)):
            logits[0, q, 0] = math.log(s / (1 - s))
            boxes[0, q] = torch.tensor([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0])
            j = torch.arange(K, dtype=torch.float32)
            kpts[0, q, 0 : 2 * K : 2] = kx + STEP[0] * j
            kpts[0, q, 1 : 2 * K : 2] = ky + STEP[1] * j
            kpts[0, q, 2 * K :] = 1 / (1 + math.exp(-1))  # X-Pose's constant visibility
        return {"pred_logits": logits, "pred_boxes": boxes, "pred_keypoints": kpts}


def build_model(args):
    return FakeXPose(args)
"""

TRANSFORMS = """
import numpy as np
import torch
from PIL import Image

CALLS = []


class Compose:
    def __init__(self, transforms):
        self.transforms = transforms

    def __call__(self, image, target):
        for t in self.transforms:
            image, target = t(image, target)
        return image, target


class RandomResize:
    def __init__(self, sizes, max_size=None):
        CALLS.append(("RandomResize", list(sizes), max_size))
        self.size, self.max_size = sizes[0], max_size

    def __call__(self, img, target=None):
        w, h = img.size
        size = self.size
        if self.max_size is not None and max(w, h) / min(w, h) * size > self.max_size:
            size = int(round(self.max_size * min(w, h) / max(w, h)))
        ow, oh = (size, int(size * h / w)) if w < h else (int(size * w / h), size)
        return img.resize((ow, oh), Image.BILINEAR), target


class ToTensor:
    def __call__(self, img, target):
        return torch.from_numpy(np.asarray(img, np.float32) / 255).permute(2, 0, 1), target


class Normalize:
    def __init__(self, mean, std):
        CALLS.append(("Normalize", list(mean), list(std)))
        self.mean = torch.tensor(mean)[:, None, None]
        self.std = torch.tensor(std)[:, None, None]

    def __call__(self, image, target=None):
        return (image - self.mean) / self.std, target
"""

CLIP = """
import torch

LOADED = []
TOKENIZED = []


def tokenize(texts, context_length=77, truncate=False):
    texts = [texts] if isinstance(texts, str) else list(texts)
    TOKENIZED.extend(texts)
    out = torch.zeros(len(texts), context_length, dtype=torch.int)
    for i, t in enumerate(texts):
        codes = [ord(c) for c in t][:context_length]
        out[i, : len(codes)] = torch.tensor(codes, dtype=torch.int)
    return out


class TextModel(torch.nn.Module):
    def encode_text(self, text):
        return torch.nn.functional.pad(text.float(), (0, 512 - text.shape[-1]))


def load(name, device="cpu", jit=False, download_root=None):
    LOADED.append((name, str(device)))
    return TextModel().to(device), (lambda image: image)
"""


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))


@pytest.fixture
def clone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fake X-Pose clone ``<tmp>/X-Pose`` (with ``ckpt.pth``), the fake ``clip`` on
    ``sys.path``; ``sys.path`` and the clone's top-level modules are restored afterwards."""
    code = tmp_path / "X-Pose"
    consts = repr((BOXES, SCORES, KPT0, STEP))
    _write(code / "models" / "__init__.py", MODELS.replace("@CONSTANTS@", consts))
    _write(code / "util" / "__init__.py", "")
    _write(code / "util" / "config.py", CONFIG)
    _write(code / "predefined_keypoints.py", PREDEFINED)
    _write(code / "transforms.py", TRANSFORMS)
    _write(code / "config_model" / "UniPose_SwinT.py", "num_body_points = 68\n")
    torch.save({"model": {"module.w": torch.tensor(7.0)}}, code / "ckpt.pth")
    _write(tmp_path / "site" / "clip.py", CLIP)

    monkeypatch.setattr(sys, "path", list(sys.path))
    sys.path.insert(0, str(tmp_path / "site"))
    for name in [n for n in sys.modules if n.split(".")[0] in CLONE_MODULES]:
        monkeypatch.delitem(sys.modules, name)
    importlib.invalidate_caches()
    before = set(sys.modules)
    yield code
    for name in set(sys.modules) - before:
        if name.split(".")[0] in CLONE_MODULES:
            del sys.modules[name]


def _frames() -> tuple[np.ndarray, np.ndarray]:
    """Four frames ``[4, H, W, 3]`` and their boxes ``[4, 4]`` (dynrec pixels): around the
    left detection, the right one, the left one, and a corner overlapping neither."""
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (4, H, W, 3), dtype=np.uint8)
    left = np.array(BOXES[0]) * [W, H, W, H]
    right = np.array(BOXES[1]) * [W, H, W, H]
    return frames, np.stack([left, right, left + 0.5, [0.0, 0.0, 1.5, 1.5]])


def _expected_xy(q: int, J: int) -> np.ndarray:
    """Keypoints ``[J, 2]`` of query ``q`` in dynrec pixels (normalised x W, H, + 0.5)."""
    j = np.arange(J)[:, None]
    return (np.array(KPT0[q]) + j * np.array(STEP)) * [W, H] + 0.5


def test_xpose_detects_keypoints_in_the_given_box(clone: Path) -> None:
    model = load_xpose(clone, clone / "ckpt.pth", device="cpu")
    assert model.w.detach().item() == 7.0  # "module." prefix dropped as X-Pose's clean_state_dict
    frames, boxes = _frames()
    valid = np.array([True, True, False, True])
    xy, conf = detect_keypoints_xpose(model, frames, boxes, "person", "tiny", valid=valid)

    assert xy.shape == (4, 3, 2) and xy.dtype == np.float32
    assert conf.shape == (4, 3) and conf.dtype == np.float32
    # frame 1's box picks the right detection although the left one scores higher
    for t, q in [(0, 0), (1, 1), (2, 0)]:
        np.testing.assert_allclose(xy[t], _expected_xy(q, 3), atol=1e-4)
    np.testing.assert_allclose(conf[0], 0.9, atol=1e-6)
    np.testing.assert_allclose(conf[1], 0.6, atol=1e-6)
    assert (conf[2] == 0).all()  # valid = False
    assert (conf[3] == 0).all()  # overlaps only the detection under the box threshold

    # X-Pose's preprocessing and call: short side 800, ImageNet normalisation, one image
    xt = sys.modules["transforms"]
    assert ("RandomResize", [800], 1333) in xt.CALLS
    assert ("Normalize", [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]) in xt.CALLS
    shape, targets = model.calls[0]
    assert shape == (1, 3, 800, 1066) and len(model.calls) == 4
    (target,) = targets
    assert target["instance_text_prompt"] == ["person"]
    assert target["keypoint_text_prompt"] == ["head", "left_hand", "right_hand"]
    assert target["object_embeddings_text"].shape == (1, 512)
    assert target["kpts_embeddings_text"].shape == (100, 512)
    assert (target["kpts_embeddings_text"][3:] == 0).all()
    assert target["kpt_vis_text"].tolist() == [1.0] * 3 + [0.0] * 97
    clip: Any = sys.modules["clip"]
    assert clip.LOADED == [("ViT-B/32", "cpu")]  # the stand-in has no model.clip_model
    assert clip.TOKENIZED == ["a photo of person", "a photo of head", "a photo of left hand",
                              "a photo of right hand"]  # fmt: skip


def test_xpose_keypoint_set_skeleton_zero_based(clone: Path) -> None:
    load_xpose(clone, clone / "ckpt.pth", device="cpu")
    names, skeleton = xpose_keypoint_set("tiny")
    assert names == ("head", "left_hand", "right_hand")
    assert skeleton.dtype == np.int64 and skeleton.tolist() == [[0, 1], [0, 2]]
    assert xpose_keypoint_set("zero_based")[1].tolist() == [[0, 1], [2, 1]]  # already 0-based
    custom = {"keypoints": ["tip", "base"], "skeleton": [[1, 2]]}
    names, skeleton = xpose_keypoint_set(custom)
    assert names == ("tip", "base") and skeleton.tolist() == [[0, 1]]
    with pytest.raises(DynrecError, match="no keypoint set 'octopus'"):
        xpose_keypoint_set("octopus")


def test_xpose_missing_clip(clone: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "clip", None)  # import clip -> ModuleNotFoundError
    with pytest.raises(DynrecError, match=r"needs OpenAI CLIP.*ViTPose backend"):
        load_xpose(clone, clone / "ckpt.pth", device="cpu")  # the clone's models import clip
    monkeypatch.delitem(sys.modules, "clip")
    model = load_xpose(clone, clone / "ckpt.pth", device="cpu")
    monkeypatch.setitem(sys.modules, "clip", None)
    frames, boxes = _frames()
    with pytest.raises(DynrecError, match=r"needs OpenAI CLIP.*pip install.*ViTPose backend"):
        detect_keypoints_xpose(model, frames, boxes, "person", "tiny")


def test_keypoints_stage_xpose_backend(clone: Path, gt_work: Path, tmp_path: Path, cli) -> None:
    """``keypoints.backend=xpose`` runs the clone in boxes around the masks."""
    import shutil

    from dynrec.artifacts import Keypoints

    work = tmp_path / "work"
    shutil.copytree(gt_work, work)
    sets = ["keypoints.backend=xpose", f"keypoints.xpose_code={clone}",
            f"keypoints.xpose_checkpoint={clone / 'ckpt.pth'}", "keypoints.xpose_set=tiny"]
    r = cli("preprocess", "-o", work, "--only", "keypoints", "--device", "cpu", *[a for s in sets for a in ("--set", s)])
    assert r.code == 0, r.err
    kp = Keypoints.load(work / "keypoints")
    assert kp.names == ["head", "left_hand", "right_hand"] and kp.skeleton.tolist() == [[0, 1], [0, 2]]
    assert kp.xy.shape[1:] == (3, 2)
    r = cli("preprocess", "-o", work, "--only", "keypoints", "--set", "keypoints.xpose_code=/nonexistent")
    assert r.code == 1 and "X-Pose code folder" in r.err and "Traceback" not in r.err


def test_xpose_checkpoint_with_pickled_objects_is_refused(clone: Path, tmp_path: Path) -> None:
    """Only tensors (and X-Pose's argparse.Namespace) are unpickled from a user's checkpoint."""
    import argparse
    from fractions import Fraction

    ok = tmp_path / "with_args.pth"
    torch.save({"model": {"module.w": torch.tensor(3.0)}, "args": argparse.Namespace(lr=1.0)}, ok)
    assert load_xpose(clone, ok, device="cpu").w.detach().item() == 3.0
    bad = tmp_path / "with_objects.pth"
    torch.save({"model": {"w": torch.tensor(1.0)}, "extra": Fraction(1, 3)}, bad)
    with pytest.raises(DynrecError, match="objects other than tensors"):
        load_xpose(clone, bad, device="cpu")
