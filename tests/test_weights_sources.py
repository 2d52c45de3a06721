"""Other papers' named weights (inference/models/weights_registry.py): the registry's entries as their
authors publish them, `list` showing each set's detector, licence, terms, and each file's source and
size; terms said before any download and, where they restrict use, accepted first; a GitHub release
asset through its redirect, cut and resumed; the Hugging Face hub played by a local server
(HF_ENDPOINT) at a pinned revision, its record checked against the pins before a byte is fetched,
and HF_HUB_OFFLINE failing at once; verify reading each detector's files in its authors' layout.
No test reaches the internet: every address is 127.0.0.1 (or localhost, the hub's "CDN")."""

from __future__ import annotations

import io
import json
import re
import time

import pytest
import torch
from safetensors.torch import save_file

from inference.models import named_weights as weights
from inference.models.weights_registry import (
    GEND_REVISION,
    GEND_SHA256,
    GEND_SIZE,
    HuggingFace,
    Licence,
    NamedEnsemble,
    WeightFile,
)
from inference.models.weights_terms import TermsNotAcceptedError, accept
from tests.http_server import PAYLOAD, digest

pytest_plugins = ("tests.http_server",)  # its `server` fixture

REVISION = "0123456789abcdef0123456789abcdef01234567"
CC_BY_NC = Licence("CC BY-NC 4.0", "https://creativecommons.org/licenses/by-nc/4.0/", "non-commercial", "Uni", True)
MIT = Licence("MIT", "https://example.org/mit", "use freely", "Andy")


@pytest.fixture
def cache(monkeypatch, tmp_path):
    monkeypatch.setenv("DEEPFAKE_DETECTOR_WEIGHTS", str(tmp_path / "cache"))
    return tmp_path / "cache"


def register(monkeypatch, name: str, *files: WeightFile, detector="deepfakebench", licence=CC_BY_NC) -> None:
    monkeypatch.setitem(weights.ENSEMBLES, name, NamedEnsemble(name, "test", files, detector=detector, licence=licence))


# --- the registry and list ---------------------------------------------------------------------------


def test_the_registry_holds_each_papers_weights_where_its_authors_publish_them():
    from inference.detectors.recipes import WinnerRecipe

    assert weights.named_ensemble("original").detector == WinnerRecipe.name
    sets = {name: weights.named_ensemble(name) for name in weights.ENSEMBLES if name != "original"}
    assert {name: s.detector for name, s in sets.items()} == {
        "sbi-ffraw": "sbi",
        "sbi-ffc23": "sbi",
        "deepfakebench-xception": "deepfakebench",
        "deepfakebench-effnb4": "deepfakebench",
        "gend-clip-l14": "gend",
    }
    (raw,), (c23,) = sets["sbi-ffraw"].files, sets["sbi-ffc23"].files
    assert (raw.origin.file_id, c23.origin.file_id) == (
        "12sLyqBp0VFwdpA-oZLdIOkOTkz_ZnIhV",
        "1X0-NYT8KPursLZZdxduRQju6E52hauV0",
    )
    assert raw.url == "https://drive.google.com/uc?export=download&id=12sLyqBp0VFwdpA-oZLdIOkOTkz_ZnIhV"
    (xception,), (effnb4,) = sets["deepfakebench-xception"].files, sets["deepfakebench-effnb4"].files
    release = "https://github.com/SCLBD/DeepfakeBench/releases/download/v1.0.1/"
    assert (xception.url, effnb4.url) == (release + "xception_best.pth", release + "effnb4_best.pth")
    model, config = sets["gend-clip-l14"].files
    assert model.origin == HuggingFace("yermandy/GenD_CLIP_L_14", "model.safetensors", GEND_REVISION)
    assert (model.size, model.sha256) == (1_215_928_160, GEND_SHA256) and GEND_SIZE == 1_215_928_160
    assert GEND_SHA256.startswith("d76f0bdf") and GEND_SHA256.endswith("96833") and len(GEND_REVISION) == 40
    assert config.companion and sets["gend-clip-l14"].checkpoints() == (model,)
    assert all(s.licence.must_accept for n, s in sets.items() if not n.startswith("gend")), "non-commercial terms"
    assert not sets["gend-clip-l14"].licence.must_accept and sets["gend-clip-l14"].licence.name == "MIT"
    nothing_invented = [f for s in sets.values() for f in s.files if f is not model]
    assert all(f.sha256 is None and f.size is None for f in nothing_invented), "no hash is published for these"


def test_list_shows_each_sets_detector_licence_terms_and_each_files_source_and_size(cache, capsys):
    assert weights.main(["list"]) == 0
    out = capsys.readouterr().out
    block = out[out.index("sbi-ffraw:") : out.index("sbi-ffc23:")]
    assert (
        "  detector: sbi; licence: the SBI software licence agreement (academic or non-profit non-commercial" in block
    )
    assert "  terms: the code and pretrained model are for your own non-commercial internal research only" in block
    assert block.rstrip().endswith(
        "  sbi/FFraw.tar: missing; SHA-256 not pinned: trusted on first use when fetched\n"
        "    from Google Drive file 12sLyqBp0VFwdpA-oZLdIOkOTkz_ZnIhV (https://drive.google.com/file/d/"
        "12sLyqBp0VFwdpA-oZLdIOkOTkz_ZnIhV/view); size not published (held to between 60 MB and 500 MB)"
    )
    assert "accept before download (--accept-terms)" in block
    assert "  detector: deepfakebench; licence: CC BY-NC 4.0 (https://creativecommons.org/licenses/by-nc/4.0/)" in out
    assert (
        "    from GitHub release asset https://github.com/SCLBD/DeepfakeBench/releases/download/v1.0.1/effnb4_best"
        in out
    )
    assert (
        "  gend/GenD_CLIP_L_14/model.safetensors: missing; SHA-256 pinned in the registry\n"
        "    from Hugging Face hub yermandy/GenD_CLIP_L_14 at revision 891ce014a030, file model.safetensors; "
        "1,215,928,160 bytes (pinned)"
    ) in out
    assert "file config.json; size not published (held to between 2 bytes and 1 MB)" in out
    assert "  detector: gend; licence: MIT" in out and "  detector: dfdc-winner; licence: MIT" in out


def test_a_detectors_set_gives_its_paths_and_its_detector(cache):
    with pytest.raises(ValueError, match=r"2 files of ensemble 'gend-clip-l14' are missing .*fetch gend-clip-l14"):
        weights.detector_paths("gend-clip-l14")
    for name in ("gend/GenD_CLIP_L_14/model.safetensors", "gend/GenD_CLIP_L_14/config.json"):
        (cache / name).parent.mkdir(parents=True, exist_ok=True)
        (cache / name).write_bytes(b"{}")
    assert weights.detector_paths("gend-clip-l14") == ("gend", [cache / "gend/GenD_CLIP_L_14/model.safetensors"])
    # what --ensemble gend-clip-l14 reads: held to the pinned size at each use (no hash: 1.2 GB)
    with pytest.raises(
        ValueError, match=r"model.safetensors: not gend-clip-l14's .*\(2 bytes, the registry pins 1215928160\)"
    ):
        weights.ensemble_entries("gend-clip-l14")


def test_a_named_set_is_refused_at_use_when_its_file_is_another_model(cache, monkeypatch):
    """--ensemble deepfakebench-xception must not run a B4 placed under the Xception's name (the
    detector itself takes either model): the file's size bounds and its layout are checked each use."""
    import dataclasses

    from tests.deepfakebench_authors import b4_state

    [file] = weights.ENSEMBLES["deepfakebench-xception"].files
    small = dataclasses.replace(file, min_size=1)  # a small stand-in for the 88 MB file
    register(monkeypatch, "deepfakebench-xception", small)
    path = cache / file.name
    path.parent.mkdir(parents=True)
    state = b4_state(torch.Generator().manual_seed(0))
    torch.save({key: value[:1].clone() for key, value in list(state.items())[:3]}, path)  # B4's keys
    with pytest.raises(ValueError, match=r"xception_best.pth: not deepfakebench-xception's .*backbone.conv1.weight"):
        weights.ensemble_entries("deepfakebench-xception")
    register(monkeypatch, "deepfakebench-xception", file)  # the real bounds: 50 to 200 MB
    with pytest.raises(ValueError, match=r"bytes, outside the \(held to between 50 MB and 200 MB\)"):
        weights.ensemble_entries("deepfakebench-xception")


# --- terms before download ------------------------------------------------------------------------------


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_terms_are_accepted_by_the_flag_or_by_yes_in_a_terminal_and_refused_otherwise():
    restricted = NamedEnsemble("nc", "test", (), licence=CC_BY_NC)
    assert accept(restricted, True).startswith("CC BY-NC 4.0: accepted with --accept-terms on ")
    question = Terminal()
    assert accept(restricted, False, Terminal("yes\n"), question).startswith("CC BY-NC 4.0: accepted at fetch's")
    assert question.getvalue() == "Do you accept the terms of CC BY-NC 4.0 for nc? Type yes to download: "
    for stdin, stderr in ((Terminal("no\n"), Terminal()), (io.StringIO("yes\n"), io.StringIO())):
        with pytest.raises(TermsNotAcceptedError, match=r"^nc: its licence \(CC BY-NC 4.0, https://creative.*--accept"):
            accept(restricted, False, stdin, stderr)
    assert accept(NamedEnsemble("mit", "test", (), licence=MIT), False, io.StringIO(), io.StringIO()) is None


@pytest.fixture
def release(server, monkeypatch, cache):
    """Set "bench" of one GitHub-release-like asset: its address redirects to a signed one."""
    asset = "/SCLBD/DeepfakeBench/releases/download/v1.0.1/xception_best.pth"
    server.redirects[asset] = f"{server.url}/release-assets/123?sig=abc"
    server.files["/release-assets/123?sig=abc"] = PAYLOAD
    file = WeightFile("deepfakebench/xception_best.pth", server.url + asset, "legacy_xception", 256, min_size=10)
    register(monkeypatch, "bench", file)
    return asset


def test_restricted_terms_are_said_and_without_acceptance_nothing_is_asked_of_the_server(release, server, capsys):
    assert weights.main(["fetch", "bench"]) == 2  # pytest's stdin is no terminal
    captured = capsys.readouterr()
    assert captured.out.startswith("bench: weights by Uni, under CC BY-NC 4.0 (https://creativecommons.org/licenses")
    assert "must be accepted before download (--accept-terms, or yes when asked)" in captured.out
    assert re.search(
        r"error: bench: its licence \(CC BY-NC 4.0, \S+\) must be accepted .* --accept-terms", captured.err
    )
    assert server.requests == [], "nothing downloaded, not even asked"


def test_a_set_already_here_needs_no_acceptance_and_permissive_terms_are_said_but_not_asked(
    release, server, cache, monkeypatch, capsys
):
    register(monkeypatch, "bench", *weights.named_ensemble("bench").files, licence=MIT)
    assert weights.main(["fetch", "bench"]) == 0
    assert "bench: weights by Andy, under MIT" in capsys.readouterr().out
    assert "terms" not in json.loads((cache / "weights.json").read_text())["deepfakebench/xception_best.pth"]
    register(monkeypatch, "bench", *weights.named_ensemble("bench").files, licence=CC_BY_NC)
    assert weights.main(["fetch", "bench"]) == 0, "nothing to download: nothing to accept"
    assert "under CC BY-NC" not in capsys.readouterr().out


def test_a_release_asset_cut_on_every_attempt_resumes_through_its_redirect_at_the_next_fetch(
    release, server, cache, capsys
):
    server.plan["/release-assets/123?sig=abc"] = [("close", 120_000), ("close", 0), ("close", 0)]
    assert weights.main(["fetch", "bench", "--accept-terms"]) == 2
    assert "the connection was cut after 120000 of 300000 bytes" in capsys.readouterr().err
    assert weights.main(["fetch", "bench", "--accept-terms"]) == 0
    assert (cache / "deepfakebench" / "xception_best.pth").read_bytes() == PAYLOAD
    assert server.requests[-2:] == [("GET", release), ("GET", "/release-assets/123?sig=abc")]
    assert server.ranges[-1] == "bytes=120000-", "resumed through the redirect, If-Range and all"
    entry = json.loads((cache / "weights.json").read_text())["deepfakebench/xception_best.pth"]
    assert entry["sha256"] == digest(PAYLOAD) and entry["terms"].startswith("CC BY-NC 4.0: accepted with --accept")
    capsys.readouterr()
    assert weights.main(["list"]) == 0
    assert re.search(
        r"^  deepfakebench/xception_best.pth: 300000 bytes; SHA-256 trusted on first use since \S+; terms CC BY-NC "
        r"4.0: accepted with --accept-terms on \d{4}-\d\d-\d\d$",
        capsys.readouterr().out,
        re.M,
    )


# --- the Hugging Face hub, played by the local server -------------------------------------------------------


def gend_layout(path, width: int = 8) -> bytes:
    torch.manual_seed(0)
    tensors = {
        "feature_extractor.vision_model.embeddings.class_embedding": torch.randn(width),
        "model.linear.weight": torch.randn(2, width),
        "model.linear.bias": torch.randn(2),
    }
    save_file(tensors, str(path))
    return path.read_bytes()


@pytest.fixture
def hub(server, monkeypatch, cache, tmp_path):
    """Set "hub" of GenD's two files at REVISION on a local hub (HF_ENDPOINT): the model is an LFS
    file whose resolve address redirects to a "CDN" on another host name (localhost), with the
    hub's X-Repo-Commit, X-Linked-Size and X-Linked-Etag (its SHA-256); the config a plain file."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    model, config = gend_layout(tmp_path / "tiny.safetensors"), b'{"backbone": "openai/clip-vit-large-patch14"}'
    resolve = f"/yermandy/GenD_CLIP_L_14/resolve/{REVISION}/"
    cdn = f"http://localhost:{server.url.rsplit(':', 1)[1]}/xet-bridge/model?signed=1"
    server.redirects[resolve + "model.safetensors"] = cdn
    server.files["/xet-bridge/model?signed=1"] = model
    server.headers[resolve + "model.safetensors"] = {
        "X-Repo-Commit": REVISION,
        "X-Linked-Size": str(len(model)),
        "X-Linked-Etag": f'"{digest(model)}"',
    }
    server.files[resolve + "config.json"] = config
    server.content_types[resolve + "config.json"] = "text/plain; charset=utf-8"
    server.headers[resolve + "config.json"] = {"X-Repo-Commit": REVISION}
    files = (
        WeightFile(
            "gend/m/model.safetensors",
            "unused",
            "vit",
            224,
            size=len(model),
            sha256=digest(model),
            origin=HuggingFace("yermandy/GenD_CLIP_L_14", "model.safetensors", REVISION),
            file_format="gend-safetensors",
        ),
        WeightFile(
            "gend/m/config.json",
            "unused",
            "vit",
            224,
            max_size=10**6,
            origin=HuggingFace("yermandy/GenD_CLIP_L_14", "config.json", REVISION),
            file_format="json",
            companion=True,
        ),
    )
    register(monkeypatch, "hub", *files, detector="gend", licence=MIT)
    return resolve, model, config


def test_the_hub_is_asked_at_the_pinned_revision_and_its_files_fetched_and_verified(hub, server, cache, capsys):
    resolve, model, config = hub
    assert weights.main(["fetch", "hub"]) == 0
    assert (cache / "gend/m/model.safetensors").read_bytes() == model
    assert (cache / "gend/m/config.json").read_bytes() == config
    assert server.requests == [
        ("HEAD", resolve + "model.safetensors"),
        ("GET", resolve + "model.safetensors"),
        ("GET", "/xet-bridge/model?signed=1"),
        ("HEAD", resolve + "config.json"),
        ("GET", resolve + "config.json"),
    ]
    assert weights.main(["verify", "hub"]) == 0
    out = capsys.readouterr().out
    assert "ok  gend/m/model.safetensors: SHA-256 pinned in the registry" in out
    assert "ok  gend/m/config.json: SHA-256 trusted on first use since" in out


@pytest.mark.parametrize(
    "header, value, says",
    [
        ("X-Repo-Commit", "f" * 40, f"the hub resolves revision {REVISION} to commit {'f' * 40}, not to itself"),
        ("X-Linked-Etag", '"' + "e" * 64 + '"', f"the hub states SHA-256 {'e' * 64}, not the"),
        ("X-Linked-Size", "12", "the hub states 12 bytes, the registry pins"),
    ],
)
def test_a_hub_record_that_differs_from_the_pins_is_refused_before_a_byte_is_fetched(
    hub, server, cache, capsys, header, value, says
):
    resolve, _, _ = hub
    server.headers[resolve + "model.safetensors"][header] = value
    assert weights.main(["fetch", "hub"]) == 2
    assert f"{server.url}{resolve}model.safetensors: {says}" in capsys.readouterr().err
    assert server.requests == [("HEAD", resolve + "model.safetensors")] and not (cache / "gend").exists()


def test_a_cut_hub_transfer_resumes_at_the_next_fetch(hub, server, cache, capsys):
    _, model, _ = hub
    server.plan["/xet-bridge/model?signed=1"] = [("close", 100)] * 3
    assert weights.main(["fetch", "hub"]) == 2
    assert (cache / "gend/m/model.safetensors.part").stat().st_size == 300
    assert weights.main(["fetch", "hub"]) == 0
    assert (cache / "gend/m/model.safetensors").read_bytes() == model and server.ranges[-2] == "bytes=300-"


def test_a_hub_that_cannot_be_reached_is_said_in_one_line_at_once(hub, cache, monkeypatch, capsys):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:1")
    started = time.monotonic()
    assert weights.main(["fetch", "hub", "--timeout", "2"]) == 2
    assert time.monotonic() - started < 5
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "error: http://127.0.0.1:1/yermandy/GenD_CLIP_L_14/resolve/" in error
    assert "/model.safetensors: cannot ask the Hugging Face hub (" in error and not (cache / "gend").exists()


def test_with_hf_hub_offline_fetch_fails_at_once_and_asks_nothing(hub, server, cache, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.monotonic()
    assert weights.main(["fetch", "hub"]) == 2
    assert time.monotonic() - started < 2
    error = capsys.readouterr().err
    assert (
        "error: hub: HF_HUB_OFFLINE is set, so the Hugging Face hub is not asked for model.safetensors and the" in error
    )
    assert "unset HF_HUB_OFFLINE to fetch, or put the files fetched by other means at" in error
    assert server.requests == []


# --- verify reads each detector's files in its authors' layout -------------------------------------------


def test_verify_reads_each_file_in_its_authors_layout(cache, monkeypatch, tmp_path, capsys):
    sbi = {"net._conv_stem.weight": torch.zeros(48, 3, 3, 3), "net._fc.weight": torch.zeros(2, 1792)}
    sbi["net._fc.bias"] = torch.zeros(2)
    bench = {"backbone.conv1.weight": torch.zeros(32, 3, 3, 3), "backbone.last_linear.weight": torch.zeros(2, 2048)}
    cache.mkdir()
    torch.save({"model": sbi, "optimizer": {"state": {}}, "epoch": 3}, cache / "sbi.tar")
    torch.save(bench, cache / "xception.pth")
    torch.save(sbi, cache / "bare.tar")  # SBI's tensors without the {"model": ...} wrapper
    torch.save({"backbone.conv1.weight": torch.zeros(32, 3, 3, 3)}, cache / "no_head.pth")
    gend_layout(cache / "gend.safetensors")
    (cache / "junk.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    register(
        monkeypatch,
        "placed",
        WeightFile("sbi.tar", "unused", "e", 380, file_format="sbi-checkpoint"),
        WeightFile("xception.pth", "unused", "e", 256, file_format="deepfakebench-xception"),
        WeightFile("bare.tar", "unused", "e", 380, file_format="sbi-checkpoint"),
        WeightFile("no_head.pth", "unused", "e", 256, file_format="deepfakebench-xception"),
        WeightFile("gend.safetensors", "unused", "e", 224, file_format="gend-safetensors"),
        WeightFile("junk.safetensors", "unused", "e", 224, file_format="gend-safetensors"),
    )
    assert weights.main(["verify", "placed"]) == 2
    verdicts = dict(line.split(": ", 1) for line in capsys.readouterr().out.splitlines())
    for name in ("sbi.tar", "xception.pth", "gend.safetensors"):
        assert verdicts[f"ok  {name}"].startswith("placed by hand, SHA-256 "), name
    assert verdicts["BAD  bare.tar"] == (
        "not SBI's checkpoint layout (a dict whose 'model' holds the state dict) (read as sbi-checkpoint)"
    )
    assert verdicts["BAD  no_head.pth"] == "no 'backbone.last_linear.weight' (read as deepfakebench-xception)"
    assert verdicts["BAD  junk.safetensors"].startswith("not a readable safetensors file")
    recorded = json.loads((cache / "weights.json").read_text())
    assert sorted(recorded) == ["gend.safetensors", "sbi.tar", "xception.pth"], "only what was read is trusted"
