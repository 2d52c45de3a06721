"""Released weights: the downloader against a local HTTP(S) server (resume after a reset or closed
connection, every attempt cut, short bodies with and without Content-Length, a wrong size or
SHA-256, redirects that would leave HTTPS, a 404, an unreachable host), fetch, list and verify of
a named ensemble through the command line, and its use by predict."""

from __future__ import annotations

import dataclasses
import json
import logging
import re

import pytest
import torch

from inference.models import named_weights as weights
from inference.models.download import DownloadError, download
from inference.models.ensemble_file import ensemble_members
from inference.models.named_weights import NamedEnsemble, WeightFile
from tests.http_server import OTHER, PAYLOAD, digest
from training.models.zoo import create_model

pytest_plugins = ("tests.http_server",)  # its `server` and `tls_server` fixtures


def register(monkeypatch, *files: WeightFile) -> None:
    monkeypatch.setitem(weights.ENSEMBLES, "tiny", NamedEnsemble("tiny", "test models", tuple(files)))


@pytest.fixture
def cache(monkeypatch, tmp_path):
    monkeypatch.setenv("DEEPFAKE_DETECTOR_WEIGHTS", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def served_pair(server, monkeypatch, cache):
    """Ensemble "tiny" of two files of random bytes (`a` and `b`), nothing pinned."""
    server.files.update({"/a": PAYLOAD, "/b": OTHER})
    files = [WeightFile(name, f"{server.url}/{name}", "resnet18", 64) for name in ("a", "b")]
    register(monkeypatch, *files)
    return files


def manifest(cache) -> dict:
    return json.loads((cache / "weights.json").read_text())


# --- the downloader ---------------------------------------------------------------------------


def test_fetch_records_each_hash_as_trusted_on_first_use_and_list_says_so(served_pair, cache, capsys, caplog):
    caplog.set_level(logging.INFO, logger="inference.weights")
    assert weights.main(["fetch", "tiny"]) == 0
    assert (cache / "a").read_bytes() == PAYLOAD and (cache / "b").read_bytes() == OTHER
    record = manifest(cache)
    assert record["a"]["sha256"] == digest(PAYLOAD) and record["a"]["trust"] == "trusted on first use"
    assert f"a: SHA-256 {digest(PAYLOAD)} recorded in weights.json, trusted on first use" in caplog.text
    capsys.readouterr()
    assert weights.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "tiny: test models; 2 of 2 files in" in out
    assert re.search(r"^  a: 300000 bytes; SHA-256 trusted on first use since \S+$", out, re.M), out


def test_list_tells_pinned_from_trusted_on_first_use_and_placed_by_hand(served_pair, cache, monkeypatch, capsys):
    a, b = served_pair
    c = WeightFile("c", "http://127.0.0.1:1/c", "resnet18", 64)
    register(monkeypatch, dataclasses.replace(a, sha256=digest(PAYLOAD)), b, c)
    assert weights.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "  a: missing; SHA-256 pinned in the registry" in out
    assert "  b: missing; SHA-256 not pinned: trusted on first use when fetched" in out
    register(monkeypatch, dataclasses.replace(a, sha256=digest(PAYLOAD)), b)
    assert weights.main(["fetch", "tiny"]) == 0
    register(monkeypatch, dataclasses.replace(a, sha256=digest(PAYLOAD)), b, c)
    (cache / "c").write_bytes(b"by hand")
    assert weights.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "  a: 300000 bytes; SHA-256 pinned in the registry" in out
    assert re.search(r"  b: 200000 bytes; SHA-256 trusted on first use since", out)
    assert "  c: 7 bytes; placed by hand, SHA-256 unknown: run verify to record it" in out
    assert manifest(cache)["a"]["trust"] == "pinned"
    (cache / "weights.json").write_text(json.dumps({"b": {"size": 200_000, "sha256": digest(OTHER)}}))
    assert weights.main(["list"]) == 0  # a record written before sizes were checked
    assert "  b: 200000 bytes; SHA-256 trusted on first use (recorded by an older fetch" in capsys.readouterr().out


def test_every_attempt_cut_fails_keeps_the_part_and_the_next_fetch_resumes(served_pair, cache, server, capsys):
    server.plan["/a"] = [("reset", 50_000)] * 3
    assert weights.main(["fetch", "tiny"]) == 2
    error = capsys.readouterr().err
    assert re.search(
        rf"error: {server.url}/a: the connection was cut after \d+ of 300000 bytes .*run fetch again", error
    )
    assert not (cache / "a").exists(), "a cut file is never renamed into place"
    assert 0 < (cache / "a.part").stat().st_size < len(PAYLOAD)
    assert not (cache / "weights.json").exists(), "nothing recorded"
    assert weights.main(["verify", "tiny", "--no-load"]) == 2
    assert re.search(r"BAD  a: missing \(\d+ bytes downloaded in a.part: run fetch\)", capsys.readouterr().out)
    assert weights.main(["fetch", "tiny"]) == 0
    assert (cache / "a").read_bytes() == PAYLOAD and not (cache / "a.part").exists()
    assert re.fullmatch(r"bytes=[1-9]\d*-", server.ranges[-2]), "the second fetch resumed /a"
    assert weights.main(["verify", "tiny", "--no-load"]) == 0


def test_a_short_body_with_content_length_on_every_attempt_is_not_put_in_place(served_pair, cache, server, capsys):
    server.plan["/a"] = [("close", 50_000)] * 3
    assert weights.main(["fetch", "tiny"]) == 2
    assert f"{server.url}/a: the connection was cut after 150000 of 300000 bytes" in capsys.readouterr().err
    assert not (cache / "a").exists() and (cache / "a.part").stat().st_size == 150_000
    assert server.ranges == [None, "bytes=50000-", "bytes=100000-"]


def test_a_body_of_unstated_size_is_refused_unless_the_registry_pins_it(
    served_pair, cache, server, monkeypatch, capsys
):
    """HTTP/1.0 without Content-Length: the body ends where the connection closes, so a cut one
    looks whole; the old code renamed it into place."""
    a, b = served_pair
    server.no_length.add("/a")
    server.plan["/a"] = [("close", 100_000)]
    assert weights.main(["fetch", "tiny"]) == 2
    error = capsys.readouterr().err
    assert f"{server.url}/a: the server did not state the file's size" in error
    assert "the 100000 bytes received cannot be known to be whole" in error and "a.part" in error
    assert not (cache / "a").exists() and (cache / "a.part").stat().st_size == 100_000
    # Whole this time, but still of no stated size: still refused.
    (cache / "a.part").unlink()
    assert weights.main(["fetch", "tiny"]) == 2
    assert not (cache / "a").exists()
    # A pinned size: the short answer is retried (this server ignores Range) and the whole one taken.
    (cache / "a.part").unlink()
    register(monkeypatch, dataclasses.replace(a, size=len(PAYLOAD)), b)
    server.plan["/a"] = [("close", 100_000)]
    assert weights.main(["fetch", "tiny"]) == 0
    assert (cache / "a").read_bytes() == PAYLOAD
    # A pinned SHA-256 alone: taken when the bytes match it.
    (cache / "a").unlink()
    register(monkeypatch, dataclasses.replace(a, sha256=digest(PAYLOAD)), b)
    assert weights.main(["fetch", "tiny"]) == 0
    assert (cache / "a").read_bytes() == PAYLOAD


def test_a_wrong_pinned_hash_is_refused_and_nothing_put_in_place(served_pair, cache, monkeypatch, capsys):
    a, b = served_pair
    register(monkeypatch, dataclasses.replace(a, sha256=digest(OTHER)), b)
    assert weights.main(["fetch", "tiny"]) == 2
    error = capsys.readouterr().err
    assert f"/a: the file's SHA-256 is {digest(PAYLOAD)}, not the {digest(OTHER)} pinned in the registry" in error
    assert not (cache / "a").exists() and not (cache / "a.part").exists()
    assert "a" not in (manifest(cache) if (cache / "weights.json").exists() else {})


def test_a_redownload_is_held_to_the_hash_recorded_on_first_use(served_pair, cache, server, capsys):
    assert weights.main(["fetch", "tiny"]) == 0
    (cache / "b").unlink()
    server.files["/b"] = OTHER[:4] + OTHER[:3:-1]  # the same size and first bytes, other bytes
    assert weights.main(["fetch", "tiny"]) == 2
    assert "recorded in weights.json on first use" in capsys.readouterr().err
    assert not (cache / "b").exists() and manifest(cache)["b"]["sha256"] == digest(OTHER)


def test_a_file_already_here_is_checked_before_it_is_accepted(served_pair, cache, monkeypatch, capsys):
    a, b = served_pair
    assert weights.main(["fetch", "tiny"]) == 0
    (cache / "a").write_bytes(PAYLOAD[:100_000])  # truncated after it was recorded
    assert weights.main(["fetch", "tiny"]) == 2
    assert (
        f"{cache / 'a'}: already here but 100000 bytes, 300000 when recorded in weights.json" in capsys.readouterr().err
    )
    # A truncated file placed by hand, with the size pinned in the registry.
    (cache / "weights.json").unlink()
    register(monkeypatch, dataclasses.replace(a, size=len(PAYLOAD)), b)
    assert weights.main(["fetch", "tiny"]) == 2
    assert "already here but 100000 bytes, the registry pins 300000; not accepted" in capsys.readouterr().err


def test_a_redirect_from_https_to_http_is_refused(served_pair, cache, server, tls_server, monkeypatch, capsys):
    a, b = served_pair
    tls_server.files["/b"] = OTHER
    tls_server.redirects["/a"] = f"{server.url}/a"
    register(
        monkeypatch,
        dataclasses.replace(a, url=f"{tls_server.url}/a"),
        dataclasses.replace(b, url=f"{tls_server.url}/b"),
    )
    assert weights.main(["fetch", "tiny"]) == 2
    error = capsys.readouterr().err
    assert f"error: {tls_server.url}/a: redirected to {server.url}/a, which is not HTTPS; refused" in error
    assert not (cache / "a").exists() and not (cache / "a.part").exists()
    assert server.ranges == [], "the plain-HTTP server was never asked"


def test_a_redirect_from_http_to_https_is_followed_and_to_ftp_refused(
    served_pair, cache, server, tls_server, monkeypatch
):
    a, b = served_pair
    tls_server.files["/a"] = PAYLOAD
    server.redirects["/up"] = f"{tls_server.url}/a"
    server.redirects["/ftp"] = "ftp://127.0.0.1:1/a"
    register(monkeypatch, dataclasses.replace(a, url=f"{server.url}/up"), b)
    assert weights.main(["fetch", "tiny"]) == 0
    assert (cache / "a").read_bytes() == PAYLOAD
    with pytest.raises(DownloadError, match=r"/ftp: redirected to ftp://127.0.0.1:1/a, which is not HTTPS"):
        download(f"{server.url}/ftp", cache / "c")


# --- real checkpoints: verify loads them --------------------------------------------------------


@pytest.fixture
def tiny_ensemble(server, monkeypatch, cache, tmp_path):
    """A named ensemble of two resnet18 checkpoints served by the local server."""
    files = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        path = tmp_path / f"source_{seed}.pt"
        torch.save(create_model("resnet18").state_dict(), path)
        server.files[f"/tiny_{seed}"] = path.read_bytes()
        files.append(WeightFile(f"tiny_{seed}", f"{server.url}/tiny_{seed}", "resnet18", 64))
    register(monkeypatch, *files)
    return cache


def test_fetch_verify_and_use_a_named_ensemble(tiny_ensemble, capsys):
    with pytest.raises(ValueError, match="2 of the 2 files of ensemble 'tiny' are missing.*fetch tiny"):
        ensemble_members("tiny")
    assert weights.main(["fetch", "tiny"]) == 0
    assert sorted(p.name for p in tiny_ensemble.iterdir()) == ["tiny_1", "tiny_2", "weights.json"]
    assert weights.main(["verify", "tiny"]) == 0
    assert capsys.readouterr().out.count(": SHA-256 trusted on first use since") == 2
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


def test_verify_hashes_files_placed_by_hand_and_trusts_them_on_first_use(tiny_ensemble, capsys):
    tiny_ensemble.mkdir()
    torch.save({"not": torch.zeros(2)}, tiny_ensemble / "tiny_1")
    torch.save(create_model("resnet18").state_dict(), tiny_ensemble / "tiny_2")
    hand = digest((tiny_ensemble / "tiny_2").read_bytes())
    assert weights.main(["verify", "tiny", "--no-load"]) == 0
    out = capsys.readouterr().out
    assert f"unchecked  tiny_2: placed by hand, SHA-256 {hand}: nothing pinned or recorded" in out
    assert not (tiny_ensemble / "weights.json").exists(), "--no-load checked nothing, so records nothing"
    assert weights.main(["verify", "tiny"]) == 2
    out = capsys.readouterr().out
    assert "BAD  tiny_1:" in out
    assert f"ok  tiny_2: placed by hand, SHA-256 {hand} now recorded in weights.json, trusted on first use" in out
    assert manifest(tiny_ensemble) == {
        "tiny_2": {
            "size": (tiny_ensemble / "tiny_2").stat().st_size,
            "sha256": hand,
            "trust": "placed by hand, trusted on first use",
            "recorded": manifest(tiny_ensemble)["tiny_2"]["recorded"],
        }
    }
    assert weights.main(["verify", "tiny", "--no-load"]) == 0
    assert "ok  tiny_2: SHA-256 placed by hand, trusted on first use since" in capsys.readouterr().out
    with open(tiny_ensemble / "tiny_2", "ab") as file:
        file.write(b"x")
    assert weights.main(["verify", "tiny", "--no-load"]) == 2
    assert "BAD  tiny_2: " in capsys.readouterr().out


def test_the_original_ensemble_is_the_released_seven_b7():
    original = weights.named_ensemble("original")
    assert len(original.files) == 7
    assert all(f.encoder == "tf_efficientnet_b7_ns" and f.input_size == 380 for f in original.files)
    assert all(
        f.url == f"https://github.com/selimsef/dfdc_deepfake_challenge/releases/download/0.0.1/{f.name}"
        for f in original.files
    )
    assert all(f.size is None and f.sha256 is None for f in original.files), "nothing invented: trusted on first use"
    with pytest.raises(ValueError, match="no ensemble named 'newest'; known: deepfakebench-effnb4, .*, original, sbi"):
        weights.named_ensemble("newest")
