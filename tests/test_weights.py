"""Released weights: the downloader against a local HTTP server (resume after a cut connection, a
wrong size, a 404, an unreachable host), fetch and verify of a named ensemble, and its use by predict."""

from __future__ import annotations

import http.server
import socket
import threading

import numpy as np
import pytest
import torch

from inference import weights
from inference.ensemble import ensemble_members
from inference.weights import DownloadError, NamedEnsemble, WeightFile, download
from training.zoo import create_model

PAYLOAD = np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8).tobytes()


class Server:
    """Serves `files` ({path: bytes}) with HTTP Range; `cut_after[path]` bytes into the first
    answer for a path, it closes the connection; `lie_about_size[path]` states a larger length."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.cut_after: dict[str, int] = {}
        self.ranges: list[str | None] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404, "Not Found")
                    return
                requested = self.headers.get("Range")
                server.ranges.append(requested)
                start = int(requested.split("=")[1].rstrip("-")) if requested else 0
                self.send_response(206 if requested else 200)
                if requested:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                cut = server.cut_after.pop(self.path, None)
                self.wfile.write(body[start:] if cut is None else body[start : start + cut])
                if cut is not None:
                    self.close_connection = True

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def server():
    served = Server()
    yield served
    served.httpd.shutdown()
    served.httpd.server_close()


def test_a_cut_download_resumes_where_it_stopped(server, tmp_path):
    server.files["/model"] = PAYLOAD
    server.cut_after["/model"] = 100_000
    path = download(f"{server.url}/model", tmp_path / "model")
    assert path.read_bytes() == PAYLOAD
    assert server.ranges == [None, "bytes=100000-"], "the second request asked only for the rest"
    assert not (tmp_path / "model.part").exists()


def test_a_download_cut_at_its_last_attempt_is_kept_for_the_next_fetch(server, tmp_path):
    server.files["/model"] = PAYLOAD
    server.cut_after["/model"] = 120_000
    with pytest.raises(DownloadError, match="cut after 120000 of 300000 bytes; run fetch again to resume"):
        download(f"{server.url}/model", tmp_path / "model", attempts=1)
    assert not (tmp_path / "model").exists(), "nothing under the final name until the file is whole"
    assert (tmp_path / "model.part").stat().st_size == 120_000
    download(f"{server.url}/model", tmp_path / "model")
    assert (tmp_path / "model").read_bytes() == PAYLOAD and server.ranges[-1] == "bytes=120000-"


def test_a_file_of_the_wrong_size_is_refused_and_removed(server, tmp_path):
    server.files["/model"] = PAYLOAD
    with pytest.raises(DownloadError, match=f"the server's file has {len(PAYLOAD)} bytes, expected {len(PAYLOAD) + 5}"):
        download(f"{server.url}/model", tmp_path / "model", expected_size=len(PAYLOAD) + 5)
    assert list(tmp_path.iterdir()) == []


def test_a_missing_file_is_a_clear_error(server, tmp_path):
    with pytest.raises(DownloadError, match=r"/nothing: the server answered HTTP 404"):
        download(f"{server.url}/nothing", tmp_path / "model")
    assert list(tmp_path.iterdir()) == []


def test_an_unreachable_host_says_where_to_put_the_file(tmp_path):
    with socket.socket() as probe:  # a port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(DownloadError, match=f"cannot reach the host .*put it at {tmp_path / 'model'}"):
        download(f"http://127.0.0.1:{port}/model", tmp_path / "model", timeout=2)


@pytest.fixture
def tiny_ensemble(server, monkeypatch, tmp_path):
    """A named ensemble of two resnet18 checkpoints served by the local server."""
    files = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        path = tmp_path / f"source_{seed}.pt"
        torch.save(create_model("resnet18").state_dict(), path)
        server.files[f"/tiny_{seed}"] = path.read_bytes()
        files.append(WeightFile(f"tiny_{seed}", f"{server.url}/tiny_{seed}", "resnet18", 64))
    monkeypatch.setitem(weights.ENSEMBLES, "tiny", NamedEnsemble("tiny", "two test models", tuple(files)))
    monkeypatch.setenv("DEEPFAKE_DETECTOR_WEIGHTS", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_fetch_verify_and_use_a_named_ensemble(tiny_ensemble, capsys):
    with pytest.raises(ValueError, match="2 of the 2 checkpoints of ensemble 'tiny' are missing.*fetch tiny"):
        ensemble_members("tiny")
    assert weights.main(["fetch", "tiny"]) == 0
    assert sorted(p.name for p in tiny_ensemble.iterdir()) == ["tiny_1", "tiny_2", "weights.json"]
    assert weights.main(["verify", "tiny"]) == 0
    assert capsys.readouterr().out.count("ok  tiny_") == 2
    entries = ensemble_members("tiny")
    assert [(e["path"], e["encoder"], e["input_size"]) for e in entries] == [
        (tiny_ensemble / "tiny_1", "resnet18", 64),
        (tiny_ensemble / "tiny_2", "resnet18", 64),
    ]
    data = bytearray((tiny_ensemble / "tiny_2").read_bytes())
    data[-100] ^= 0xFF
    (tiny_ensemble / "tiny_2").write_bytes(bytes(data))
    assert weights.main(["verify", "tiny", "--no-load"]) == 2
    assert "BAD  tiny_2: SHA-256 differs" in capsys.readouterr().out
    (tiny_ensemble / "tiny_1").unlink()
    assert weights.main(["verify", "tiny", "--no-load"]) == 2
    assert "BAD  tiny_1: missing" in capsys.readouterr().out


def test_verify_loads_the_weights_into_the_encoder(tiny_ensemble, capsys):
    tiny_ensemble.mkdir()
    torch.save({"not": torch.zeros(2)}, tiny_ensemble / "tiny_1")
    torch.save(create_model("resnet18").state_dict(), tiny_ensemble / "tiny_2")
    assert weights.main(["verify", "tiny"]) == 2
    out = capsys.readouterr().out
    assert "BAD  tiny_1:" in out and "ok  tiny_2" in out


def test_the_original_ensemble_is_the_released_seven_b7():
    original = weights.named_ensemble("original")
    assert len(original.files) == 7
    assert all(f.encoder == "tf_efficientnet_b7_ns" and f.input_size == 380 for f in original.files)
    assert all(
        f.url == f"https://github.com/selimsef/dfdc_deepfake_challenge/releases/download/0.0.1/{f.name}"
        for f in original.files
    )
    with pytest.raises(ValueError, match="no ensemble named 'newest'; known: original"):
        weights.named_ensemble("newest")
