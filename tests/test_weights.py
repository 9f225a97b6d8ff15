"""Weights on demand (dynrec.weights, ``dynrec weights``), against a local HTTP server on
127.0.0.1 standing in for the published URLs (``DYNREC_WEIGHTS_MIRROR``) and the Hugging Face
hub (``HF_ENDPOINT``): never the internet."""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from test_learned import weights  # noqa: F401 - the tiny learned models, served by the stand-in hub

SHA = "0123456789abcdef0123456789abcdef01234567"


class Hub:
    """Files by URL path; ``cut`` paths send half their bytes once, then close the connection."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.cut: set[str] = set()
        self.requests: list[tuple[str, str, str | None]] = []  # (method, path, Range)
        self.repos: dict[str, dict[str, bytes]] = {}

    def add_repo(self, repo: str, files: dict[str, bytes]) -> None:
        self.repos[repo] = files
        for name, data in files.items():
            self.files[f"/{repo}/resolve/{SHA}/{name}"] = data
            self.files[f"/{repo}/resolve/main/{name}"] = data


def _handler(hub: Hub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # quiet
            pass

        def _json(self, obj) -> None:
            body = json.dumps(obj).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _serve(self, head: bool) -> None:
            path = self.path.split("?", 1)[0]
            hub.requests.append((self.command, path, self.headers.get("Range")))
            for repo, files in hub.repos.items():
                if path in (f"/api/models/{repo}/revision/main", f"/api/models/{repo}"):
                    return self._json({"id": repo, "sha": SHA, "siblings": [{"rfilename": n} for n in files]})
                if path.startswith(f"/api/models/{repo}/tree/"):
                    return self._json([{"type": "file", "path": n, "size": len(d),
                                        "oid": hashlib.sha1(d).hexdigest()} for n, d in files.items()])
            if path not in hub.files:
                self.send_error(404)
                return
            data = hub.files[path]
            start = 0
            rng = self.headers.get("Range")
            if rng and not head:
                start = int(rng.split("=")[1].split("-")[0])
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(len(data) - start))
            self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
            self.send_header("X-Repo-Commit", SHA)
            self.end_headers()
            if head:
                return
            if path in hub.cut:
                hub.cut.discard(path)
                self.wfile.write(data[start:start + (len(data) - start) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(data[start:])

        def do_GET(self) -> None:
            self._serve(head=False)

        def do_HEAD(self) -> None:
            self._serve(head=True)

    return Handler


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """A running stand-in server; the network is on (``HF_HUB_OFFLINE`` unset) but every URL
    points at it; weights caches in ``tmp_path``."""
    state = Hub()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    for var in ("HF_HUB_OFFLINE", "DYNREC_OFFLINE", "TRANSFORMERS_OFFLINE", "DYNREC_WEIGHTS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("DYNREC_WEIGHTS_MIRROR", url)
    monkeypatch.setenv("HF_ENDPOINT", url)
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    state.url = url
    yield state
    server.shutdown()
    server.server_close()


def _blob(n: int, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


def test_fetch_downloads_into_the_weights_dir(hub: Hub, tmp_path: Path, cli) -> None:
    data = _blob(3 << 20)
    hub.files["/inception-2015-12-05.pt"] = data
    r = cli("weights", "fetch", "inception", "--weights-dir", tmp_path / "w")
    assert r.code == 0, r.err
    assert (tmp_path / "w" / "inception-2015-12-05.pt").read_bytes() == data
    assert list((tmp_path / "w").iterdir()) == [tmp_path / "w" / "inception-2015-12-05.pt"]
    r = cli("weights", "fetch", "inception", "--weights-dir", tmp_path / "w")  # already there: no request
    assert r.code == 0 and len(hub.requests) == 1
    r = cli("weights", "list", "--weights-dir", tmp_path / "w")
    assert r.code == 0 and str(tmp_path / "w" / "inception-2015-12-05.pt") in r.out.replace("\n", "")


def test_checksum_mismatch_leaves_nothing(hub: Hub, tmp_path: Path, cli) -> None:
    """alexnet is pinned by its sha256 prefix 7be5be79 (torch.hub's file-name convention):
    other bytes are rejected and no file, whole or partial, is left."""
    hub.files["/alexnet-owt-7be5be79.pth"] = _blob(1 << 20)
    r = cli("weights", "fetch", "alexnet", "--weights-dir", tmp_path / "w")
    assert r.code == 1 and "checksum mismatch" in r.err and "Traceback" not in r.err
    assert list((tmp_path / "w").iterdir()) == []


def test_interrupted_download_resumes(hub: Hub, tmp_path: Path, cli) -> None:
    data = _blob((2 << 20) + 12345, seed=1)
    hub.files["/i3d_torchscript.pt"] = data
    hub.cut.add("/i3d_torchscript.pt")
    w = tmp_path / "w"
    r = cli("weights", "fetch", "i3d", "--weights-dir", w)
    assert r.code == 1 and "interrupted" in r.err and "again to resume" in r.err
    assert not (w / "i3d_torchscript.pt").exists()
    part = (w / "i3d_torchscript.pt.part").stat().st_size
    assert 0 < part < len(data)
    r = cli("weights", "fetch", "i3d", "--weights-dir", w)
    assert r.code == 0, r.err
    assert (w / "i3d_torchscript.pt").read_bytes() == data and not (w / "i3d_torchscript.pt.part").exists()
    assert hub.requests[-1] == ("GET", "/i3d_torchscript.pt", f"bytes={part}-")


def test_hugging_face_model_through_hf_endpoint(hub: Hub, tmp_path: Path, cli) -> None:
    files = {"config.json": b'{"model_type": "sam"}', "model.safetensors": _blob(4096, 2),
             "preprocessor_config.json": b"{}", "flax_model.msgpack": b"not wanted"}
    hub.add_repo("facebook/sam-vit-base", files)
    r = cli("weights", "fetch", "sam-vit-base", "--weights-dir", tmp_path / "w")
    assert r.code == 0, r.err
    folder = tmp_path / "w" / "facebook" / "sam-vit-base"
    for name in ("config.json", "model.safetensors", "preprocessor_config.json"):
        assert (folder / name).read_bytes() == files[name]
    assert not (folder / "flax_model.msgpack").exists()
    from dynrec.learned.weights import resolve_model

    assert resolve_model("facebook/sam-vit-base", tmp_path / "w") == folder


@pytest.mark.parametrize("env", ["DYNREC_OFFLINE", "HF_HUB_OFFLINE"])
def test_offline_names_every_missing_file_and_never_connects(hub: Hub, tmp_path: Path, cli, monkeypatch,
                                                             env: str) -> None:
    monkeypatch.setenv(env, "1")
    hub.files["/i3d_torchscript.pt"] = b"x"
    r = cli("weights", "fetch", "i3d", "inception", "sam-vit-base", "--weights-dir", tmp_path / "w")
    assert r.code == 1 and "3 weight file(s) missing" in r.err
    for name, where in (("i3d", "i3d_torchscript.pt"), ("inception", "inception-2015-12-05.pt"),
                        ("sam-vit-base", "facebook/sam-vit-base")):
        assert name in r.err and str(tmp_path / "w" / where) in r.err
    assert hub.requests == []


def test_fetch_flag_offline_and_bad_names(hub: Hub, tmp_path: Path, cli) -> None:
    r = cli("weights", "fetch", "i3d", "--offline", "--weights-dir", tmp_path / "w")
    assert r.code == 1 and "i3d" in r.err and hub.requests == []
    r = cli("weights", "fetch", "nope")
    assert r.code == 1 and "unknown weights 'nope'" in r.err
    r = cli("weights", "fetch")
    assert r.code == 1 and "--all" in r.err


def test_preprocess_offline_lists_all_learned_weights_before_running(scene: Path, tmp_path: Path, cli,
                                                                     monkeypatch) -> None:
    """The default (learned) backends with the network off: one error naming the weights of
    depth, tracks, masks and keypoints together, and no stage has run."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("DYNREC_WEIGHTS", raising=False)
    r = cli("preprocess", scene / "video.mp4", "-o", tmp_path / "work", "--weights-dir", tmp_path / "empty")
    assert r.code == 1 and "Traceback" not in r.err
    for name in ("depth-anything-v2-small", "cotracker3-offline", "cotracker-code", "sam-vit-base",
                 "vitpose-plus-base"):
        assert name in r.err
    assert str(tmp_path / "empty" / "depth-anything" / "Depth-Anything-V2-Small-hf") in r.err
    assert not (tmp_path / "work" / "frames").exists()


def test_preprocess_fetches_a_learned_model_before_running(hub: Hub, weights: Path, gt_work: Path,  # noqa: F811
                                                           tmp_path: Path, cli) -> None:
    """Network on, weights missing: the depth model is downloaded from the (stand-in) hub into
    --weights-dir before the stage runs, then used."""
    import shutil

    folder = weights / "depth-anything" / "Depth-Anything-V2-Small-hf"
    hub.add_repo("depth-anything/Depth-Anything-V2-Small-hf",
                 {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()})
    work = tmp_path / "work"
    shutil.copytree(gt_work, work)
    r = cli("preprocess", "-o", work, "--only", "depth", "--set", "depth.backend=learned",
            "--weights-dir", tmp_path / "dl")
    assert r.code == 0, r.err
    got = tmp_path / "dl" / "depth-anything" / "Depth-Anything-V2-Small-hf"
    assert (got / "config.json").read_bytes() == (folder / "config.json").read_bytes()
    assert "downloading depth-anything-v2-small" in r.err
    import json

    assert json.loads((work / "depth" / "manifest.json").read_text())["info"]["weights"] == str(got)


def test_one_lookup_for_files_models_and_hub_clones(tmp_path: Path, monkeypatch) -> None:
    """dynrec.weights.locate is the one lookup: the learned backends, the metrics and
    ``dynrec weights`` find the same file / folder / torch.hub clone, in the same order."""
    from dynrec.learned.cotracker import load_cotracker
    from dynrec.learned.weights import find_file as learned_file
    from dynrec.learned.weights import resolve_model
    from dynrec.metrics.weights import find_weights
    from dynrec.weights import cached_hub_repo, find_file, find_model, get, locate

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("DYNREC_WEIGHTS", str(tmp_path / "env"))
    ckpts = tmp_path / "torch" / "hub" / "checkpoints"
    for d in (ckpts, tmp_path / "env", tmp_path / "w"):
        d.mkdir(parents=True)
        (d / "i3d_torchscript.pt").write_bytes(b"x")
    # --weights-dir, then $DYNREC_WEIGHTS, then the torch hub checkpoints
    for expected in (tmp_path / "w", tmp_path / "env", ckpts):
        assert find_file("i3d_torchscript.pt", tmp_path / "w")[0] == expected / "i3d_torchscript.pt"
        assert find_weights("i3d_torchscript.pt", tmp_path / "w", "fvd") == expected / "i3d_torchscript.pt"
        assert learned_file("i3d_torchscript.pt", tmp_path / "w") == expected / "i3d_torchscript.pt"
        assert locate(get("i3d"), tmp_path / "w").path == expected / "i3d_torchscript.pt"
        (expected / "i3d_torchscript.pt").unlink()
    hit, searched = find_file("i3d_torchscript.pt", tmp_path / "w", extra=[tmp_path / "x.pt"])
    assert hit is None and searched == [str(tmp_path / "w" / "i3d_torchscript.pt"),
                                        str(tmp_path / "env" / "i3d_torchscript.pt"),
                                        str(tmp_path / "cache" / "dynrec" / "weights" / "i3d_torchscript.pt"),
                                        str(ckpts / "i3d_torchscript.pt"), str(tmp_path / "x.pt")]
    # a Hugging Face model folder: <dir>/org--name is found by all three
    folder = tmp_path / "env" / "facebook--sam-vit-base"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    assert find_model("facebook/sam-vit-base", tmp_path / "w")[0] == folder
    assert resolve_model("facebook/sam-vit-base", tmp_path / "w") == folder
    assert locate(get("sam-vit-base"), tmp_path / "w").path == folder
    # a torch.hub clone (a ':ref' suffix ignored); CoTracker loads the cached clone offline
    assert cached_hub_repo("facebookresearch/co-tracker") is None
    clone = tmp_path / "torch" / "hub" / "facebookresearch_co-tracker_main"
    clone.mkdir(parents=True)
    (clone / "hubconf.py").write_text(
        "import torch\n\ndef cotracker3_offline(pretrained=True):\n    return torch.nn.Linear(2, 3)\n")
    assert cached_hub_repo("facebookresearch/co-tracker") == clone
    assert cached_hub_repo("facebookresearch/co-tracker:main") == clone
    assert locate(get("cotracker-code"), None).path == clone
    net = load_cotracker(weights_dir=tmp_path / "w")
    assert net.weight.shape == (3, 2)
