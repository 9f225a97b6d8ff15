"""CLIP-I / CLIP-T / CLIP temporal consistency on a tiny random-init CLIPModel saved with
save_pretrained and re-loaded offline, with a tiny byte-level BPE tokenizer."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pathlib import Path

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")

from dynrec.errors import DynrecError
from dynrec.metrics import WeightsMissing, clip_i, clip_t, clip_temporal_consistency, load_clip
from dynrec.metrics.clip import ClipScorer

HUB_ID = "openai/clip-vit-base-patch32"


def _tiny_tokenizer() -> object:
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    chars = list(bytes_to_unicode().values())
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[])


@pytest.fixture(scope="module")
def tiny_clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import CLIPConfig, CLIPModel

    tok = _tiny_tokenizer()
    vocab = tok.get_vocab()
    eos = vocab["<|endoftext|>"]
    cfg = CLIPConfig(
        text_config={
            "vocab_size": len(vocab),
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "max_position_embeddings": 32,
            "bos_token_id": vocab["<|startoftext|>"],
            "eos_token_id": eos,
            "pad_token_id": eos,
        },
        vision_config={
            "image_size": 32,
            "patch_size": 8,
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
        },
        projection_dim=16,
    )
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("weights") / HUB_ID.replace("/", "--")
    CLIPModel(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_clip(tiny_clip_dir: Path) -> ClipScorer:
    return load_clip(tiny_clip_dir)


def _images(seed: int, n: int = 4, h: int = 40, w: int = 56) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:h, 0:w] / 10
    phase = rng.uniform(0, 6, (n, 3))
    return (
        np.stack(
            [np.stack([np.sin(xs + p[c]) * np.cos(ys - p[c]) for c in range(3)], -1) for p in phase]
        )
        * 0.4
        + 0.5
    )


def test_clip_i_identical_is_one(tiny_clip: ClipScorer) -> None:
    x = _images(0)
    assert clip_i(x, x, tiny_clip) == pytest.approx(1.0, abs=1e-5)
    per = clip_i(x, _images(1), tiny_clip, reduction="none")
    assert per.shape == (4,) and np.all(per <= 1 + 1e-6) and np.all(per >= -1 - 1e-6)
    assert clip_i(torch.from_numpy(x), x, tiny_clip) == pytest.approx(1.0, abs=1e-5)


def test_clip_t_strings_and_token_ids(tiny_clip: ClipScorer) -> None:
    x = _images(2)
    a = clip_t(x, "a cat on a mat", tiny_clip, reduction="none")
    enc = tiny_clip.tokenizer(["a cat on a mat"], return_tensors="pt")
    b = clip_t(x, enc["input_ids"], tiny_clip, reduction="none")
    np.testing.assert_allclose(a, b, atol=1e-6)
    c = clip_t(
        x,
        {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]},
        tiny_clip,
        reduction="none",
    )
    np.testing.assert_allclose(a, c, atol=1e-6)
    # one prompt per image
    same = np.repeat(x[:1], 4, axis=0)
    per = clip_t(same, ["a cat", "a dog", "a cat", "a dog"], tiny_clip, reduction="none")
    assert per[0] == pytest.approx(per[2], abs=1e-6) and per[1] == pytest.approx(per[3], abs=1e-6)
    assert per[0] != pytest.approx(per[1], abs=1e-6)
    assert per[0] == pytest.approx(clip_t(x[:1], "a cat", tiny_clip), abs=1e-6)
    assert np.all(np.abs(per) <= 1 + 1e-6)
    with pytest.raises(ValueError):
        clip_t(x, ["a", "b"], tiny_clip)


def test_clip_t_without_tokenizer_needs_ids(tiny_clip: ClipScorer) -> None:
    bare = ClipScorer(
        tiny_clip.model,
        None,
        tiny_clip.shortest_edge,
        tiny_clip.crop_size,
        tiny_clip.mean,
        tiny_clip.std,
        "test",
    )
    with pytest.raises(WeightsMissing):
        clip_t(_images(3), "a cat", bare)
    ids = tiny_clip.tokenizer(["a cat"], return_tensors="pt")["input_ids"]
    assert np.isfinite(clip_t(_images(3), ids, bare))


def test_temporal_consistency(tiny_clip: ClipScorer) -> None:
    still = np.repeat(_images(4, n=1), 5, axis=0)
    assert clip_temporal_consistency(still, tiny_clip) == pytest.approx(1.0, abs=1e-5)
    per = clip_temporal_consistency(_images(5, n=5), tiny_clip, reduction="none")
    assert per.shape == (4,)
    with pytest.raises(DynrecError):
        clip_temporal_consistency(still[:1], tiny_clip)


def test_load_by_hub_id_from_weights_dir(
    tiny_clip_dir: Path, tiny_clip: ClipScorer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DYNREC_WEIGHTS", raising=False)
    scorer = load_clip(HUB_ID, weights_dir=tiny_clip_dir.parent)
    x = _images(6)
    np.testing.assert_allclose(scorer.image_embeddings(x), tiny_clip.image_embeddings(x), atol=1e-6)
    monkeypatch.setenv("DYNREC_WEIGHTS", str(tiny_clip_dir.parent))
    assert load_clip(HUB_ID).tokenizer is not None


def test_missing_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DYNREC_WEIGHTS", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(WeightsMissing) as info:
        load_clip("nobody/no-such-clip", weights_dir=tmp_path)
    assert "nobody/no-such-clip" in str(info.value) and str(tmp_path) in str(info.value)


def test_preprocessing_matches_clip_image_processor(tiny_clip: ClipScorer) -> None:
    """Our torch resize / crop / normalise against transformers' own (PIL) CLIP processor."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            from transformers import CLIPImageProcessorPil as Processor
        except ImportError:
            from transformers import CLIPImageProcessor as Processor
    proc = Processor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    for h, w in ((48, 80), (90, 50)):
        img = _images(7, n=1, h=h, w=w)[0]
        u8 = (img * 255).round().astype(np.uint8)
        ref = proc(images=u8, return_tensors="pt")["pixel_values"]
        ours = tiny_clip.preprocess(u8.astype(np.float64) / 255)
        assert ours.shape == ref.shape == (1, 3, 32, 32)
        assert (ours - ref).abs().mean() < 0.01 and (ours - ref).abs().max() < 0.05
