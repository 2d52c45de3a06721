"""The classifier on OpenVINO: the same scores as PyTorch, exported once, and a clear word where it cannot run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from inference.models import runtime
from inference.models.ensemble import face_probabilities, load_member
from inference.models.runtime import openvino_available, resolve_runtime
from training.models.zoo import create_model

pytestmark = pytest.mark.skipif(not openvino_available(), reason="openvino and onnxscript are not installed")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(5)
    model = create_model("resnet18")
    with torch.no_grad():  # spread the logits, so that the probabilities say something
        model.fc.weight.mul_(40)
        model.fc.bias.fill_(-4.0)
    path = tmp_path_factory.mktemp("ov") / "r18.pt"
    torch.save({"encoder": "resnet18", "input_size": 48, "state_dict": model.state_dict()}, path)
    return path


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """An OpenVINO cache the tests that compare scores share: the checkpoint exported once
    (test_the_export_is_cached_by_the_checkpoints_bytes exports into a folder of its own)."""
    return tmp_path_factory.mktemp("ov_cache")


def _crops(count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [
        rng.integers(0, 255, (int(rng.integers(30, 90)), int(rng.integers(30, 90)), 3), np.uint8) for _ in range(count)
    ]


def test_openvino_gives_pytorchs_probabilities_in_fixed_size_batches(checkpoint, exported):
    cpu = torch.device("cpu")
    reference = load_member(checkpoint, cpu)
    member = load_member(checkpoint, cpu, runtime="openvino", cache_dir=exported)
    assert member.runtime == "openvino" and member.compiled is not None
    for count in (1, 8, 13):  # a part batch, a whole one, and one and a part
        crops = _crops(count)
        expected = face_probabilities(reference, crops, cpu)
        got = face_probabilities(member, crops, cpu)
        assert got.shape == (count,) and np.abs(got - expected).max() < 1e-4
        assert count == 1 or expected.max() - expected.min() > 0.2, "the scores differ from face to face"
    flipped = face_probabilities(member, _crops(5), cpu, hflip=True)
    assert np.abs(flipped - face_probabilities(reference, _crops(5), cpu, hflip=True)).max() < 1e-4


def test_the_export_is_cached_by_the_checkpoints_bytes(checkpoint, tmp_path, monkeypatch):
    first = load_member(checkpoint, torch.device("cpu"), runtime="openvino", cache_dir=tmp_path)
    assert first.compiled.onnx_path.parent == tmp_path and first.compiled.onnx_path.is_file()
    assert not list(tmp_path.glob(".*partial*")), "nothing half-written left behind"

    def no_export(*args):
        raise AssertionError("exported again")

    monkeypatch.setattr(runtime, "export_onnx", no_export)
    again = load_member(checkpoint, torch.device("cpu"), runtime="openvino", cache_dir=tmp_path)
    assert again.compiled.onnx_path == first.compiled.onnx_path
    changed = tmp_path / "changed.pt"
    state = torch.load(checkpoint, weights_only=True)
    state["state_dict"]["fc.bias"] += 1
    torch.save(state, changed)
    with pytest.raises(AssertionError, match="exported again"):
        load_member(changed, torch.device("cpu"), runtime="openvino", cache_dir=tmp_path)


def test_runtime_choice():
    assert resolve_runtime("auto", torch.device("cpu")) == "openvino"
    assert resolve_runtime("auto", torch.device("cuda")) == "torch"
    assert resolve_runtime("torch", torch.device("cpu")) == "torch"
    with pytest.raises(ValueError, match="CPU only"):
        resolve_runtime("openvino", torch.device("cuda"))
    with pytest.raises(ValueError, match="unknown runtime"):
        resolve_runtime("tensorrt", torch.device("cpu"))


def test_cpu_bf16_runs_only_where_it_is_native(checkpoint, tmp_path, monkeypatch, caplog):
    from inference.models import model_options
    from inference.prediction import predict_folder as predict

    args = predict.parse_args(["--test-dir", ".", "--models", str(checkpoint), "--cpu-bf16"])
    cpu = torch.device("cpu")
    monkeypatch.setattr(model_options, "native_bf16", lambda: False)
    with caplog.at_level("WARNING", logger="inference.models.model_options"):
        assert model_options.cpu_precision(args, cpu) == "f32"
    assert "no native bf16" in caplog.text and "running fp32" in caplog.text
    monkeypatch.setattr(model_options, "native_bf16", lambda: True)
    assert model_options.cpu_precision(args, cpu) == "bf16"
    assert model_options.cpu_precision(predict.parse_args(["--test-dir", ".", "--models", "m.pt"]), cpu) == "f32"
    assert model_options.cpu_precision(args, torch.device("cuda")) == "f32", "CUDA has its own fp16"
    fast = predict.parse_args(["--test-dir", ".", "--models", "m.pt", "--fast"])
    faster = {"f32_ms": 10, "bf16_ms": 6, "bf16_pays": True}
    monkeypatch.setattr(model_options, "measured_bf16_speed", lambda threads: faster)
    assert model_options.cpu_precision(fast, cpu) == "bf16", "--fast runs bf16 where it is native and measured faster"
    fast_fp32 = predict.parse_args(["--test-dir", ".", "--models", "m.pt", "--fast", "--fp32"])
    assert model_options.cpu_precision(fast_fp32, cpu) == "f32", "--fp32 keeps fp32 under --fast"
    monkeypatch.setattr(model_options, "native_bf16", lambda: False)
    caplog.clear()
    with caplog.at_level("WARNING", logger="inference.models.model_options"):
        assert model_options.cpu_precision(fast, cpu) == "f32"
    assert not caplog.text, "--fast alone says nothing where bf16 is not native: fp32 is simply faster there"
    with pytest.raises(SystemExit):
        predict.parse_args(["--test-dir", ".", "--models", "m.pt", "--fp32", "--cpu-bf16"])
    from inference.serving import detection as detect

    with pytest.raises(SystemExit):
        detect.parse_args(["x.mp4", "--models", "m.pt", "--fp32", "--cpu-bf16"])


@pytest.mark.skipif(not runtime.native_bf16(), reason="this CPU has no native bf16")
def test_openvino_bf16_stays_close_to_fp32(checkpoint, exported):
    cpu, crops = torch.device("cpu"), _crops(9)
    fp32 = face_probabilities(load_member(checkpoint, cpu, runtime="openvino", cache_dir=exported), crops, cpu)
    member = load_member(checkpoint, cpu, runtime="openvino", cache_dir=exported, precision="bf16")
    bf16 = face_probabilities(member, crops, cpu)
    assert np.abs(bf16 - fp32).max() < 0.05 and np.abs(bf16 - fp32).max() > 0, "bf16 really ran"


def test_fast_mode_runs_bf16_only_where_it_was_measured_faster(tmp_path, monkeypatch, caplog):
    """Issue 28: on an AMD EPYC with AVX-512 BF16 and no AMX, fast mode's bf16 classified a 1080p
    video in 1.29 s against fp32's 0.95 (and moved a real clip from 0.0947 to 0.00007). Native bf16
    alone no longer decides: a measurement does, taken once per CPU and cached."""
    from inference.models import bf16_speed, model_options
    from inference.prediction import predict_folder as predict

    cpu = torch.device("cpu")
    fast = predict.parse_args(["--test-dir", ".", "--models", "m.pt", "--fast"])
    monkeypatch.setattr(model_options, "native_bf16", lambda: True)
    monkeypatch.setenv("DEEPFAKE_DETECTOR_CACHE", str(tmp_path))
    measured = []

    def measure(threads, speeds):
        measured.append(threads)
        return speeds

    monkeypatch.setattr(bf16_speed, "measure", lambda threads: measure(threads, {"f32_ms": 9.5, "bf16_ms": 12.9}))
    with caplog.at_level("INFO", logger="inference.models.model_options"):
        assert model_options.cpu_precision(fast, cpu) == "f32", "bf16 slower here: fp32"
    assert "classifiers in fp32 (bf16 took 1.36 of fp32's time" in caplog.text
    assert model_options.cpu_precision(fast, cpu) == "f32" and len(measured) == 1, "measured once, then cached"
    cached = json.loads((tmp_path / "bf16_speed.json").read_text())
    [entry] = cached.values()
    assert entry["bf16_pays"] is False and entry["cpu"] == bf16_speed.cpu_identity()["cpu"]
    assert {"flags", "openvino", "threads"} <= set(entry)

    monkeypatch.setattr(bf16_speed, "cpu_identity", lambda: {"cpu": "another CPU", "flags": ["amx_bf16"]})
    monkeypatch.setattr(bf16_speed, "measure", lambda threads: measure(threads, {"f32_ms": 9.5, "bf16_ms": 4.0}))
    assert model_options.cpu_precision(fast, cpu) == "bf16", "another CPU is measured anew: bf16 pays there"
    assert len(measured) == 2 and len(json.loads((tmp_path / "bf16_speed.json").read_text())) == 2

    monkeypatch.setattr(bf16_speed, "measure", lambda threads: measure(threads, {"f32_ms": 9.5, "bf16_ms": 8.5}))
    (tmp_path / "bf16_speed.json").write_text("{not json")
    with caplog.at_level("WARNING", logger="inference.models.bf16_speed"):
        assert model_options.cpu_precision(fast, cpu) == "f32", "0.89 of fp32's time: not enough to pay for bf16"
    assert "unreadable" in caplog.text and len(measured) == 3
    explicit = predict.parse_args(["--test-dir", ".", "--models", "m.pt", "--cpu-bf16"])
    assert model_options.cpu_precision(explicit, cpu) == "bf16" and len(measured) == 3, "--cpu-bf16 is obeyed"


def test_the_bf16_measurement_times_both_precisions():
    from inference.models import bf16_speed

    speeds = bf16_speed.measure(torch.get_num_threads(), runs=2)
    assert set(speeds) == {"f32_ms", "bf16_ms"} and all(value > 0 for value in speeds.values())
