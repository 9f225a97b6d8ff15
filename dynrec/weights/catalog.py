"""Every network weight dynrec can use: where it comes from, what uses it, its licence.

Three kinds of source:

* ``hf``: a Hugging Face model repository, fetched with ``huggingface_hub.snapshot_download``
  (honours ``HF_ENDPOINT``) into ``<weights folder>/<org>/<name>``;
* ``url``: one file from a published URL (``$DYNREC_WEIGHTS_MIRROR/<file>`` when that is
  set), written to ``<weights folder>/<file>`` and checked against ``sha256`` (a full digest,
  or a prefix: torch.hub's convention of naming a file by its digest's first hex digits);
  ``sha256 = None`` means *unpinned*: only the size the server announced is checked;
* ``torchhub``: a GitHub repository's code, fetched by ``torch.hub`` into ``$TORCH_HOME/hub``.

``size`` is for display only (approximate). What is pinned is listed by ``dynrec weights list``.
"""

from __future__ import annotations

from dataclasses import dataclass

from dynrec.errors import DynrecError


@dataclass(frozen=True)
class Weight:
    """One downloadable item. ``name`` is what ``dynrec weights fetch NAME`` takes."""

    name: str
    kind: str  # "hf" | "url" | "torchhub"
    used_by: str
    licence: str
    size: str = "?"
    repo: str = ""  # hf: org/name; torchhub: owner/repo
    url: str = ""
    filename: str = ""
    sha256: str | None = None
    patterns: tuple[str, ...] = ("*.json", "*.safetensors", "*.txt")

    @property
    def pinned(self) -> str:
        if self.kind != "url":
            return "hub revision" if self.kind == "hf" else "default branch"
        if self.sha256 is None:
            return "size only"
        return "sha256" if len(self.sha256) == 64 else f"sha256 prefix {self.sha256}"


def _hf(name: str, repo: str, used_by: str, licence: str, size: str, **kw) -> Weight:
    return Weight(name, "hf", used_by, licence, size, repo=repo, **kw)


CATALOG: tuple[Weight, ...] = (
    _hf("depth-anything-v2-small", "depth-anything/Depth-Anything-V2-Small-hf",
        "depth (model=small)", "Apache-2.0", "~100 MB"),
    _hf("depth-anything-v2-base", "depth-anything/Depth-Anything-V2-Base-hf",
        "depth (model=base)", "CC-BY-NC-4.0", "~390 MB"),
    _hf("depth-anything-v2-large", "depth-anything/Depth-Anything-V2-Large-hf",
        "depth (model=large)", "CC-BY-NC-4.0", "~1.3 GB"),
    _hf("sam-vit-base", "facebook/sam-vit-base", "masks", "Apache-2.0", "~375 MB"),
    _hf("vitpose-plus-base", "usyd-community/vitpose-plus-base", "keypoints", "Apache-2.0", "?"),
    Weight("cotracker3-offline", "url", "tracks (offline model)", "CC-BY-NC-4.0",
           "~100 MB", url="https://huggingface.co/facebook/cotracker3/resolve/main/scaled_offline.pth",
           filename="scaled_offline.pth"),
    Weight("cotracker3-online", "url", "tracks (online model)", "CC-BY-NC-4.0",
           "~100 MB", url="https://huggingface.co/facebook/cotracker3/resolve/main/scaled_online.pth",
           filename="scaled_online.pth"),
    Weight("cotracker-code", "torchhub", "tracks (model code)",
           "CC-BY-NC-4.0", "~1 MB", repo="facebookresearch/co-tracker"),
    Weight("alexnet", "url", "lpips, mlpips", "BSD-3-Clause", "~233 MB",
           url="https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
           filename="alexnet-owt-7be5be79.pth", sha256="7be5be79"),
    Weight("lpips-heads", "url", "lpips, mlpips (heads)", "BSD-2-Clause",
           "~6 KB", url="https://raw.githubusercontent.com/richzhang/PerceptualSimilarity/master/lpips/weights/v0.1/alex.pth",
           filename="lpips_alex_v0.1.pth"),
    _hf("clip-vit-base-patch32", "openai/clip-vit-base-patch32", "clip_i, clip_t, tc_clip", "MIT",
        "~600 MB", patterns=("*.json", "*.txt", "model.safetensors")),
    Weight("inception", "url", "fid", "Apache-2.0", "~92 MB",
           url="https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt",
           filename="inception-2015-12-05.pt"),
    Weight("i3d", "url", "fvd", "Apache-2.0", "~50 MB",
           url="https://www.dropbox.com/s/ge9e5ujwgetktms/i3d_torchscript.pt?dl=1",
           filename="i3d_torchscript.pt"),
)

BY_NAME: dict[str, Weight] = {w.name: w for w in CATALOG}

#: ``tracks.model`` -> its checkpoint's entry.
COTRACKER: dict[str, str] = {"cotracker3_offline": "cotracker3-offline", "cotracker3_online": "cotracker3-online"}

#: What each metric weight need (``weights:<x>`` in :data:`dynrec.metrics.NEEDS`) is made of.
METRIC_WEIGHTS: dict[str, tuple[str, ...]] = {
    "weights:lpips": ("alexnet", "lpips-heads"),
    "weights:clip": ("clip-vit-base-patch32",),
    "weights:inception": ("inception",),
    "weights:i3d": ("i3d",),
}


def get(name: str) -> Weight:
    if name not in BY_NAME:
        raise DynrecError(f"unknown weights '{name}'; known: {', '.join(BY_NAME)}")
    return BY_NAME[name]


def for_hf_model(model_id: str, used_by: str) -> Weight | None:
    """The catalogue entry of the Hugging Face model ``model_id`` (a new, unlisted entry for
    a repo id not in the catalogue), or None for a local folder."""
    if "/" not in model_id or model_id.startswith((".", "/", "~")):
        return None
    for w in CATALOG:
        if w.kind == "hf" and w.repo == model_id:
            return w
    return _hf(model_id, model_id, used_by, "see the model card", "?")


