"""Ensemble weights from out-of-fold predictions, test-time flips, and the inference benchmark."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml

from common.cli import InputError
from common.video_io import VideoInfo, probe_video
from inference.benchmarks import stage_bench as bench
from inference.fitting import ensemble_fit as fit_ensemble
from inference.models.ensemble import Member, face_probabilities, random_member
from inference.models.ensemble_file import read_ensemble_file
from inference.models.model_options import measured_bf16_speed
from inference.models.runtime import native_bf16, openvino_available
from inference.pipeline.faces import NoFaceError
from tests.conftest import dfdc_metadata, save_tiny_checkpoint, shared_data
from training.models.zoo import create_model

# the same clips through MTCNN here and in other modules: each frame once (tests/detection_memo.py)
pytest_plugins = ("tests.detection_memo",)
pytestmark = pytest.mark.usefixtures("remembered_detections")


def _run(folder, probabilities, labels, encoder="resnet18", size=96):
    folder.mkdir(parents=True)
    rows = "\n".join(f"v{i},{y},{p}" for i, (y, p) in enumerate(zip(labels, probabilities, strict=True)))
    (folder / "oof_predictions.csv").write_text("video,label,probability\n" + rows + "\n")
    (folder / "config.yaml").write_text(yaml.safe_dump({"model": {"encoder": encoder, "input_size": size}}))


def test_weights_favour_the_better_run_and_the_file_loads(tmp_path):
    labels = np.array([0, 1] * 20)
    rng = np.random.default_rng(0)
    good = np.clip(labels * 0.8 + 0.1 + rng.normal(0, 0.05, 40), 0.01, 0.99)
    noisy = rng.uniform(0.05, 0.95, 40)
    logs = tmp_path / "weights" / "logs"
    _run(logs / "b7_0_111", good, labels)
    _run(logs / "b7_0_555", noisy, labels, encoder="tf_efficientnet_b7_ns", size=380)
    out = tmp_path / "configs" / "ensemble.yaml"
    assert fit_ensemble.main([str(logs / "b7_0_111"), str(logs / "b7_0_555"), "--out", str(out)]) == 0
    members = read_ensemble_file(out)
    assert [m["path"].resolve() for m in members] == [
        (tmp_path / "weights" / f"b7_0_{s}_best.pt").resolve() for s in (111, 555)
    ]
    assert members[0]["weight"] > 0.9 and members[0]["weight"] + members[1]["weight"] == pytest.approx(1.0, abs=1e-5)
    assert members[1]["encoder"] == "tf_efficientnet_b7_ns" and members[1]["input_size"] == 380


def test_runs_of_different_folds_cannot_be_fitted(tmp_path):
    _run(tmp_path / "a", [0.2], [0])
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "oof_predictions.csv").write_text("video,label,probability\nother,1,0.7\n")
    with pytest.raises(InputError, match="share no validation video"):
        fit_ensemble.read_runs([tmp_path / "a", tmp_path / "b"])


def test_hflip_averages_each_face_with_its_mirror():
    torch.manual_seed(0)
    member = Member("m", create_model("resnet18").eval(), "resnet18", 32, (0.5,) * 3, (0.25,) * 3)
    crop = np.random.default_rng(1).integers(0, 255, (40, 30, 3), dtype=np.uint8)
    plain = face_probabilities(member, [crop], torch.device("cpu"))
    mirrored = face_probabilities(member, [np.ascontiguousarray(crop[:, ::-1])], torch.device("cpu"))
    both = face_probabilities(member, [crop], torch.device("cpu"), hflip=True)
    assert both[0] == pytest.approx((plain[0] + mirrored[0]) / 2, abs=1e-6)


@pytest.mark.slow
def test_bench_times_the_baseline_exact_and_fast_modes_and_compares_their_scores(demo_world, tmp_path, capsys):
    """On the CPU, where exact mode must score as the fp32 baseline does (CUDA: tools/gpu_check.py)."""
    video = next(p for p, e in sorted(dfdc_metadata(demo_world).items()) if e["label"] == "REAL")
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / video.name).symlink_to(video)
    torch.manual_seed(2)
    model = create_model("resnet18")
    torch.save({"encoder": "resnet18", "input_size": 64, "state_dict": model.state_dict()}, tmp_path / "m.pt")
    argv = ["--test-dir", str(tmp_path / "videos"), "--models", str(tmp_path / "m.pt"), "--device", "cpu"]
    assert bench.main([*argv, "--json", str(tmp_path / "bench.json")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert json.loads((tmp_path / "bench.json").read_text()) == report, "--json writes what is printed"
    runtime = "openvino" if openvino_available() else "torch"  # what --runtime auto picks on the CPU
    assert report["device"] == "cpu" and report["runtime"] == runtime
    assert list(report["modes"]) == ["baseline", "exact", "fast"]
    settings = report["settings"]
    assert settings["baseline"] == {
        "runtime": "torch",
        "precision": "f32",
        "recall_boost": False,
        "detection": "the original's: facenet-pytorch, one frame after another",
    }
    assert settings["exact"] == {
        "runtime": runtime,
        "precision": "f32",
        "recall_boost": False,
        "detection": "facenet-pytorch, 2 frame(s) at a time",
    }
    assert settings["fast"]["detection"].startswith("seeded: facenet-pytorch on one frame in 4 and the last")
    assert settings["fast"]["recall_boost"] and settings["fast"]["precision"] == (
        "bfloat16" if native_bf16() and measured_bf16_speed(torch.get_num_threads())["bf16_pays"] else "f32"
    ), "bf16 only where it is native and measured faster"
    loading = report["cold_start"]["loading"]
    assert sorted(loading) == ["baseline", "exact", "fast"] and report["cold_start"]["openvino_cache"] == "as found"
    assert all(times["models_s"] >= 0 and times["detector_s"] >= 0 for times in loading.values())
    assert all(times["first_video_s"] > 0 for times in loading.values()), "the first video ran once untimed"
    assert report["cold_start"]["imports_s"] is None or report["cold_start"]["imports_s"] > 0
    frames = min(32, probe_video(video).frame_count)
    for mode in ("baseline", "exact", "fast"):
        [result] = report["modes"][mode]
        assert result["frames"] == frames and result["faces"] >= frames - 2 and 0 < result["score"] < 1
        assert result["size"] == [probe_video(video).width, probe_video(video).height]
    differences = report["max_score_difference"]
    assert differences["exact_vs_baseline"] < 1e-4, "exact mode scores as the baseline does"
    assert 0 < differences["fast_vs_exact"] < 0.05, "fast mode moves scores, a little"
    for mode in ("baseline", "exact", "fast"):  # the arithmetic of the summary: test_bench_summary_gives_...
        [result] = report["modes"][mode]
        stages = result["decode_s"] + result["detect_s"] + result["classify_s"]
        assert result["classify_s"] > 0 and result["total_s"] == pytest.approx(stages, abs=2e-3), mode
        assert report["mean_total_s"][mode] == result["total_s"], "one video: its time is the mean"
    assert sorted(report["speedup_over_baseline"]) == ["exact", "fast"]
    for mode in ("baseline", "exact", "fast"):
        [result] = report["modes"][mode]
        assert report["mean_stage_s"][mode] == {
            stage: result[f"{stage}_s"] for stage in ("decode", "detect", "classify")
        }
    assert report["max_score_difference_video"] == {"exact_vs_baseline": video.name, "fast_vs_exact": video.name}


def test_bench_reads_an_ensemble_file(demo_world, tmp_path, capsys):
    video = sorted(dfdc_metadata(demo_world))[0]
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / video.name).symlink_to(video)
    save_tiny_checkpoint(tmp_path / "a.pt", seed=1)
    (tmp_path / "ensemble.yaml").write_text("members:\n  - {checkpoint: a.pt, weight: 2}\n")
    argv = ["--test-dir", str(tmp_path / "videos"), "--ensemble", str(tmp_path / "ensemble.yaml"), "--no-baseline"]
    assert bench.main([*argv, "--videos", "1", "--runtime", "torch"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["models"] == [str(tmp_path / "a.pt")] and list(report["modes"]) == ["exact", "fast"]


def test_bench_times_an_ensemble_of_random_models(demo_world, tmp_path, capsys):
    video = sorted(dfdc_metadata(demo_world))[0]
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / video.name).symlink_to(video)
    args = ["--test-dir", str(tmp_path / "videos"), "--random-models", "2", "--encoder", "resnet18", "--size", "32"]
    assert bench.main([*args, "--no-baseline", "--no-warm-up"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [times["first_video_s"] for times in report["cold_start"]["loading"].values()] == [None, None]
    assert report["models"] == ["random resnet18"] * 2 and report["runtime"] == "torch"
    assert list(report["modes"]) == ["exact", "fast"]
    if report["device"] == "cpu":
        assert report["gpu_memory_peak_mb"] is None and not torch.cuda.is_available()
    else:  # CUDA by default where present: each mode's peak
        assert report["device"] == "cuda" and torch.cuda.is_available()
        assert sorted(report["gpu_memory_peak_mb"]) == ["exact", "fast"]
        assert all(peak > 0 for peak in report["gpu_memory_peak_mb"].values())
    assert {mode["runtime"] for mode in report["settings"].values()} == {"torch"}
    for mode in ("exact", "fast"):
        [result] = report["modes"][mode]
        assert result["faces"] > 0 and 0 < result["score"] < 1
    cpu = torch.device("cpu")
    first, second = random_member("resnet18", None, cpu, 0), random_member("resnet18", 32, cpu, 1)
    assert (first.input_size, second.input_size) == (224, 32), "the encoder's recipe size unless given"
    assert not torch.equal(first.model.fc.weight, second.model.fc.weight), "each model its own weights"
    with pytest.raises(SystemExit) as refused:
        bench.main(["--test-dir", str(tmp_path / "videos"), "--random-models", "2"])
    assert refused.value.code == 2 and "error: --random-models needs --encoder" in capsys.readouterr().err


class _Clock:
    """A stand-in for the time module whose clock moves only when the faked stages work."""

    def __init__(self):
        self.now = 1000.0

    def perf_counter(self) -> float:
        return self.now


def test_bench_interleaves_the_modes_video_by_video_and_names_the_machine(demo_world, tmp_path, capsys, monkeypatch):
    """Issue 28: figures taken one mode after another on a shared machine compare loads, not modes;
    --interleave times each video in every mode in turn, and the report names the CPU and the load."""
    (tmp_path / "videos").mkdir()
    for video in sorted(dfdc_metadata(demo_world))[:2]:
        (tmp_path / "videos" / video.name).symlink_to(video)
    timed, bench_video = [], bench.bench_video
    monkeypatch.setattr(
        bench,
        "bench_video",
        lambda path, *a, sparse=False, **k: (
            timed.append((path.name, sparse)) or bench_video(path, *a, sparse=sparse, **k)
        ),
    )
    args = ["--test-dir", str(tmp_path / "videos"), "--random-models", "1", "--encoder", "resnet18", "--size", "32"]
    assert bench.main([*args, "--no-baseline", "--no-warm-up", "--interleave", "--device", "cpu"]) == 0
    report = json.loads(capsys.readouterr().out)
    first, second = sorted(path.name for path in (tmp_path / "videos").iterdir())
    assert timed == [(first, False), (first, True), (second, False), (second, True)], (
        "exact, then fast (sparse decoding)"
    )
    assert report["interleaved"] is True and [len(rows) for rows in report["modes"].values()] == [2, 2]
    machine = report["machine"]
    assert machine["cpu"] and machine["cores"] >= 1 and len(machine["load_average_before"]) == 3
    assert set(machine["flags"]) | set(machine["no"]) >= {"avx512_bf16", "amx_bf16"}


def test_bench_charges_each_stage_its_own_time(monkeypatch, tmp_path):
    clock = _Clock()
    frame = np.zeros((36, 64, 3), np.uint8)

    def read(path, frames, sparse=False):
        clock.now += 1.25
        return dict.fromkeys(range(frames), frame)

    def detect(path, decoded, detector, recall):
        clock.now += 2.5
        if path.name == "noface.mp4":
            raise NoFaceError(f"{path}: no face")
        return SimpleNamespace(crops=[frame] * (2 * len(decoded)), views={})

    def classify(member, crops, device, batch_size=64, amp_dtype=None, hflip=False):
        clock.now += 0.01 * len(crops) * member.cost
        return np.full(len(crops), 0.1 * member.cost)

    monkeypatch.setattr(bench, "time", clock)
    monkeypatch.setattr(bench, "probe_video", lambda path: VideoInfo(64, 36, 25.0, 100))
    monkeypatch.setattr(bench, "read_sampled_frames", read)
    monkeypatch.setattr(bench, "crop_faces", detect)
    monkeypatch.setattr("inference.detectors.recipes.face_probabilities", classify)  # the winner's recipe
    # the fake classifier takes 1 and 3 hundredths of a second a face
    members = [SimpleNamespace(name=f"m{c}", cost=c, weight=float(c), clip=None) for c in (1, 3)]
    members, device = bench.recipes_of(members), torch.device("cpu")
    result = bench.bench_video(tmp_path / "face.mp4", None, members, device, 8, None)
    assert (result["frames"], result["faces"], result["size"]) == (8, 16, [64, 36])
    assert (result["decode_s"], result["detect_s"], result["classify_s"]) == (1.25, 2.5, 0.64)
    assert result["total_s"] == 4.39 and result["score"] == pytest.approx(0.1 * 0.25 + 0.3 * 0.75)
    empty = bench.bench_video(tmp_path / "noface.mp4", None, members, device, 8, None)
    assert (empty["faces"], empty["classify_s"], empty["total_s"], empty["score"]) == (0, 0.0, 3.75, None)


def _row(video: str, decode: float, detect: float, classify: float, score: float | None) -> dict:
    stages = {"decode_s": decode, "detect_s": detect, "classify_s": classify}
    return {"video": video, **stages, "total_s": decode + detect + classify, "score": score}


def test_bench_summary_gives_speedups_and_score_differences():
    rows = {
        "baseline": [_row("a", 1.0, 1.0, 2.0, 0.2), _row("b", 1.0, 2.0, 3.0, None)],
        "exact": [_row("a", 0.5, 0.25, 0.25, 0.20004), _row("b", 0.5, 0.5, 0.5, None)],
        "fast": [_row("a", 0.25, 0.125, 0.125, 0.23), _row("b", 0.25, 0.125, 0.125, 0.4)],
        "fast-fp32": [_row("a", 0.25, 0.125, 0.125, 0.22), _row("b", 0.25, 0.125, 0.125, 0.45)],
    }
    summary = bench.summarise(rows)
    assert summary["mean_total_s"] == {"baseline": 5.0, "exact": 1.25, "fast": 0.5, "fast-fp32": 0.5}
    assert summary["mean_stage_s"]["baseline"] == {"decode": 1.0, "detect": 1.5, "classify": 2.5}
    assert summary["mean_stage_s"]["exact"] == {"decode": 0.5, "detect": 0.375, "classify": 0.375}
    assert summary["speedup_over_baseline"] == {"exact": 4.0, "fast": 10.0, "fast-fp32": 10.0}
    differences = summary["max_score_difference"]
    assert differences["exact_vs_baseline"] == pytest.approx(4e-5)
    assert differences["fast_vs_exact"] == pytest.approx(0.02996), "fast is held to exact mode; b has no exact score"
    assert differences["fast_vs_fast-fp32"] == pytest.approx(0.05), "bf16 is held to fast mode's fp32"
    assert differences["fast-fp32_vs_exact"] == pytest.approx(0.01996), "b has no exact score"
    assert summary["max_score_difference_video"] == {
        "exact_vs_baseline": "a",
        "fast_vs_exact": "a",
        "fast-fp32_vs_exact": "a",
        "fast_vs_fast-fp32": "b",
    }
    without_baseline = bench.summarise({"exact": rows["exact"], "fast": rows["fast"]})
    assert "fast_vs_fast-fp32" not in without_baseline["max_score_difference"]
    assert "speedup_over_baseline" not in without_baseline and list(without_baseline["max_score_difference"]) == [
        "fast_vs_exact"
    ]


@pytest.mark.shared_data
@pytest.mark.slow
def test_on_real_clips_our_way_scores_as_the_baseline(tmp_path, capsys):
    clips = tmp_path / "clips"
    clips.mkdir()
    for name in ("004.mp4", "634_660.mp4"):
        (clips / name).symlink_to(shared_data("dfdc_mini", "dfdc_train_part_0", name))
    torch.manual_seed(4)
    model = create_model("resnet18")
    with torch.no_grad():  # scores spread over the range, so that a difference would show
        model.fc.weight.mul_(40)
    torch.save({"encoder": "resnet18", "input_size": 64, "state_dict": model.state_dict()}, tmp_path / "m.pt")
    # no untimed first pass of each mode: its scores are compared here, not its times; 16 frames of
    # each clip (the modes' scores agree at any count: half of the default's MTCNN work)
    argv = ["--test-dir", str(clips), "--models", str(tmp_path / "m.pt"), "--device", "cpu", "--no-warm-up"]
    assert bench.main([*argv, "--frames", "16"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [r["faces"] for r in report["modes"]["exact"]] == [r["faces"] for r in report["modes"]["baseline"]]
    assert all(r["faces"] >= 14 for r in report["modes"]["exact"]), "a face in all but 2 of the 16 frames at least"
    assert report["max_score_difference"]["exact_vs_baseline"] < 1e-4
    assert report["max_score_difference"]["fast_vs_exact"] < 0.05


def test_bench_refuses_bad_numbers_and_a_json_folder_that_is_not_there_before_any_work(tmp_path, capsys):
    base = ["--test-dir", str(tmp_path), "--random-models", "1", "--encoder", "resnet18"]
    refusals = {
        ("--videos", "0"): "argument --videos: must be more than 0, got 0",
        ("--frames", "0"): "argument --frames: must be more than 0, got 0",
        ("--videos", "-1"): "argument --videos: must be more than 0, got -1",
        ("--frames", "2.5"): "argument --frames: '2.5' is not a whole number",
        ("--json", str(tmp_path / "no" / "r.json")): f"--json: {tmp_path / 'no'} is not a folder",
    }
    for bad, message in refusals.items():
        with pytest.raises(SystemExit) as refused:
            bench.parse_args([*base, *bad])
        assert refused.value.code == 2, bad
        assert message in capsys.readouterr().err, bad
    rows = {"baseline": [{"video": "a", "total_s": 0.004, "decode_s": 0.004, "detect_s": 0.0, "classify_s": 0.0}]}
    rows["exact"] = [{"video": "a", "total_s": 0.0, "decode_s": 0.0, "detect_s": 0.0, "classify_s": 0.0}]
    for mode in rows.values():
        mode[0]["score"] = None
    assert bench.summarise(rows)["speedup_over_baseline"] == {"exact": None}, "no division by a zero time"


def test_bench_skips_a_file_it_cannot_read_and_says_so(demo_world, tmp_path, caplog):
    video = sorted(dfdc_metadata(demo_world))[0]
    (tmp_path / "a_broken.mp4").write_bytes(b"not a video at all")
    (tmp_path / "b.mp4").symlink_to(video)
    with caplog.at_level("WARNING", logger="inference.bench"):
        assert bench.readable_videos(sorted(tmp_path.iterdir())) == [tmp_path / "b.mp4"]
    assert "a_broken.mp4: skipped" in caplog.text


def test_bench_modes_are_predicts_settings(monkeypatch):
    from inference.models import model_options

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    faster = {"f32_ms": 10.0, "bf16_ms": 6.0, "bf16_pays": True}
    monkeypatch.setattr(model_options, "measured_bf16_speed", lambda threads: faster)
    for native in (True, False):
        monkeypatch.setattr(model_options, "native_bf16", lambda native=native: native)
        modes = {mode.name: mode for mode in bench.modes_to_time(bench.MODE_NAMES, "openvino", cpu)}
        assert list(modes) == ["baseline", "exact", "fast", "fast-fp32"]
        assert (modes["baseline"].runtime, modes["baseline"].precision, modes["baseline"].recall) == (
            "torch",
            "f32",
            False,
        )
        assert (modes["exact"].precision, modes["exact"].amp_dtype, modes["exact"].recall) == ("f32", None, False)
        fast = ("bf16", torch.bfloat16) if native else ("f32", None)
        assert (modes["fast"].precision, modes["fast"].amp_dtype) == fast and modes["fast"].recall
        assert (modes["fast-fp32"].precision, modes["fast-fp32"].amp_dtype) == ("f32", None) and modes["fast-fp32"].fast
    slower = {"f32_ms": 10.0, "bf16_ms": 13.0, "bf16_pays": False}
    monkeypatch.setattr(model_options, "measured_bf16_speed", lambda threads: slower)
    monkeypatch.setattr(model_options, "native_bf16", lambda: True)
    fast = bench.modes_to_time(["fast"], "openvino", cpu)[0]
    assert (fast.precision, fast.amp_dtype) == ("f32", None), "native bf16 measured slower: fp32"
    on_cuda = {mode.name: mode for mode in bench.modes_to_time(["exact", "fast", "fast-fp32"], "torch", cuda)}
    assert on_cuda["exact"].amp_dtype == on_cuda["fast"].amp_dtype == torch.float16, "fp16 autocast on CUDA"
    assert on_cuda["fast-fp32"].amp_dtype is None, "--fp32: no autocast"


def test_a_checkpoint_or_weights_folder_given_as_a_run_says_which_folder_is_wanted(tmp_path, capsys):
    from common import cli
    from inference.fitting import calibrate_ensemble as calibrate

    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "demo_0_111_best.pt").write_bytes(b"")
    for wrong in (tmp_path / "weights" / "demo_0_111_best.pt", tmp_path / "weights"):
        assert cli.run(calibrate.main, ["--runs", str(wrong), "--out", str(tmp_path / "e.yaml")]) == 2
        line = capsys.readouterr().err.strip().splitlines()[-1]
        assert (
            line
            == f"error: {wrong}: not a training run's log folder (no config.yaml): give OUTPUT_DIR/logs/RUN, "
            + ("the folder training.train writes beside RUN_best.pt")
        )
