"""tools/gpu_check.sh where there is no GPU: its arguments, its JSON summary, its exit status, and
its workers' code run on the CPU (the GPU steps themselves run only on a GPU host)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time

import pytest
import torch

from tests.conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "tools"))
import gpu_check  # noqa: E402
import gpu_requirements  # noqa: E402
import gpu_workers  # noqa: E402

sys.path.remove(str(REPO_ROOT / "tools"))

NO_CUDA = {"available": False, "reason": "torch.cuda.is_available() is False"}
CUDA = {"available": True, "devices": ["a fake GPU"]}


def _last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def test_without_cuda_every_step_is_reported_skipped_and_the_exit_status_is_non_zero(tmp_path):
    out = tmp_path / "summary.json"
    result = subprocess.run(
        [str(REPO_ROOT / "tools" / "gpu_check.sh"), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},  # no GPU, on a GPU host too
    )
    assert result.returncode == 1, result.stderr[-2000:]
    summary = _last_json(result.stdout)
    assert summary["ok"] is False and summary["cuda"]["available"] is False
    assert list(summary["steps"]) == ["train_fp16", "ddp_syncbn", "predict_fp16", "bench_b7", "suite"]
    for entry in summary["steps"].values():
        assert entry["status"] == "skipped" and entry["error"].startswith("no CUDA device: torch.cuda.is_available()")
    assert summary["error"].startswith("no GPU here") and "nothing was checked" in result.stderr
    assert json.loads(out.read_text()) == summary, "--out holds the same summary"


def test_steps_and_budget_are_checked_and_a_dry_run_prints_the_plan(capsys):
    assert gpu_check.parse_args(["--steps", "suite, train_fp16"]).steps == ["train_fp16", "suite"], "run order"
    for argv, message in (
        (["--steps", "train_fp16,gpu_burn"], "unknown step(s) gpu_burn: choose from train_fp16, ddp_syncbn"),
        (["--steps", ","], "unknown step(s) (none given)"),
        (["--budget", "0"], "--budget must be a positive number of seconds, got 0"),
    ):
        with pytest.raises(SystemExit) as refused:
            gpu_check.parse_args(argv)
        assert refused.value.code == 2 and message in capsys.readouterr().err
    assert gpu_check.main(["--dry-run", "--steps", "bench_b7,ddp_syncbn", "--budget", "100"]) == 0
    plan = _last_json(capsys.readouterr().out)
    assert plan["dry_run"] and plan["steps"] == {
        "ddp_syncbn": {"status": "planned", "limit_s": 90, "missing": []},
        "bench_b7": {"status": "planned", "limit_s": 100, "missing": []},
    }


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--budget", "nan"], "--budget must be a positive number of seconds, got nan"),  # was NaN in the JSON
        (["--budget", "inf"], "--budget must be a positive number of seconds, got inf"),  # was Infinity
        (["--pytest-args", '"unclosed'], "--pytest-args '\"unclosed': No closing quotation (one string, split as"),
    ],
)
def test_arguments_that_would_break_the_summary_are_refused_in_a_line(argv, message, capsys):
    with pytest.raises(SystemExit) as refused:
        gpu_check.main(["--dry-run", *argv])
    err = capsys.readouterr().err
    assert refused.value.code == 2 and message in err and "Traceback" not in err, err


def _passes(context):
    return {"number": 1.5}


def _fails(context):
    raise gpu_check.StepFailedError("loss did not fall")


def _crashes(context):
    raise KeyError("losses")


def test_a_failing_step_makes_the_run_fail_and_the_steps_after_it_still_run(monkeypatch, capsys):
    runners = {"train_fp16": _fails, "ddp_syncbn": _crashes, "predict_fp16": _passes, "bench_b7": _passes}
    monkeypatch.setattr(gpu_check, "RUNNERS", runners)
    monkeypatch.setattr(gpu_check, "cuda_status", lambda: CUDA)
    assert gpu_check.main(["--steps", "train_fp16,ddp_syncbn,predict_fp16"]) == 1
    summary = _last_json(capsys.readouterr().out)
    assert summary["ok"] is False
    steps = summary["steps"]
    assert steps["train_fp16"] == {"status": "failed", "seconds": 0.0, "error": "loss did not fall"}
    assert steps["ddp_syncbn"]["status"] == "failed" and steps["ddp_syncbn"]["error"] == "KeyError: 'losses'"
    assert steps["predict_fp16"] == {"status": "passed", "seconds": 0.0, "error": None, "number": 1.5}
    assert gpu_check.main(["--steps", "predict_fp16,bench_b7"]) == 0
    assert _last_json(capsys.readouterr().out)["ok"] is True


def test_a_step_lacking_a_package_is_skipped_naming_it_and_pip_is_run_only_when_allowed(monkeypatch, capsys, caplog):
    """A host without a package index (GPU_CHECK_NO_INSTALL=1) that lacks a step's package: that
    step is skipped with the package named, the others run; where installing is allowed, pip is
    asked for exactly the lines the chosen steps lack. The page and OpenVINO are the suite's only."""
    assert not {"gradio>=5", "openvino>=2024.4"} & set(gpu_requirements.step_requirements("predict_fp16"))
    assert {"gradio>=5", "openvino>=2024.4"} <= set(gpu_requirements.step_requirements("suite"))
    real = gpu_requirements.step_requirements

    def one_missing(step):
        return [*real(step), "no-such-package-xyz>=1"] if step == "train_fp16" else real(step)

    monkeypatch.setattr(gpu_requirements, "step_requirements", one_missing)
    monkeypatch.setattr(gpu_check, "RUNNERS", {"train_fp16": _passes, "predict_fp16": _passes})
    monkeypatch.setattr(gpu_check, "cuda_status", lambda: CUDA)
    asked = []
    monkeypatch.setattr(gpu_requirements, "install", lambda lines: asked.append(lines) or False)
    monkeypatch.setenv("GPU_CHECK_NO_INSTALL", "1")
    assert gpu_check.main(["--steps", "train_fp16,predict_fp16"]) == 1
    steps = _last_json(capsys.readouterr().out)["steps"]
    assert steps["train_fp16"]["status"] == "skipped" and asked == []
    assert steps["train_fp16"]["error"] == "packages missing: no-such-package-xyz: not installed"
    assert steps["predict_fp16"]["status"] == "passed"
    monkeypatch.setenv("GPU_CHECK_NO_INSTALL", "0")
    assert gpu_check.main(["--steps", "train_fp16,predict_fp16"]) == 1
    assert asked == [["no-such-package-xyz>=1"]], "pip is asked for what is missing, and only that"
    assert "pip could not install no-such-package-xyz>=1" in caplog.text
    capsys.readouterr()
    assert gpu_check.main(["--dry-run", "--steps", "train_fp16"]) == 0 and len(asked) == 1, "a dry run installs nothing"
    plan = _last_json(capsys.readouterr().out)
    assert plan["steps"]["train_fp16"]["missing"] == ["no-such-package-xyz: not installed"]


def test_steps_left_without_time_are_skipped_and_a_slow_command_is_stopped(tmp_path):
    context = gpu_check.Context(tmp_path, deadline=time.monotonic() + 600)

    def spends_the_budget(context):
        context.deadline = time.monotonic() + 5
        return {}

    summary = gpu_check.run_steps(
        ["train_fp16", "suite"], context, CUDA, {"train_fp16": spends_the_budget, "suite": _passes}
    )
    assert summary["steps"]["train_fp16"]["status"] == "passed" and summary["ok"] is False
    assert summary["steps"]["suite"]["status"] == "skipped" and "out of time" in summary["steps"]["suite"]["error"]
    with pytest.raises(gpu_check.StepFailedError, match=r"timed out after 1 s: .* -c 'import time; time.sleep\(30\)'"):
        gpu_check.run_command([sys.executable, "-c", "import time; time.sleep(30)"], 1)
    with pytest.raises(gpu_check.StepFailedError, match="exit status 3: .*: ValueError: said why"):
        gpu_check.run_command(
            [sys.executable, "-c", "import sys; print('ValueError: said why', file=sys.stderr); sys.exit(3)"], 30
        )


def test_the_judgements_of_losses_fp16_scores_and_pytest_output():
    falling = [0.7, 0.69, 0.6, 0.5, 0.45, 0.4, 0.3, 0.2, 0.15, 0.1]
    assert gpu_check.falling_loss_problem(falling) is None
    assert gpu_check.falling_loss_problem([*falling[:9], float("nan")]) == "non-finite loss at steps [9]"
    assert gpu_check.falling_loss_problem([0.5] * 10).startswith("loss did not fall: mean of the first 5 steps 0.5000")
    assert gpu_check.falling_loss_problem(falling[:6]) == "6 losses, fewer than 10"

    def row(scores, faces=None, error=None):
        return {
            "score": sum(scores) / len(scores),
            "face_scores": scores,
            "faces_per_frame": faces or [1] * len(scores),
            "error": error,
        }

    runs = {
        "fp16": {"a.mp4": row([0.5, 0.7]), "b.mp4": row([0.2])},
        "fp32": {"a.mp4": row([0.5, 0.695]), "b.mp4": row([0.21])},
    }
    report = gpu_check.fp16_differences(runs)
    assert report["faces"] == 3 and report["max_abs_dp"] == pytest.approx(0.01)
    assert report["fp32_probability_range"] == [0.21, 0.695]
    runs["fp32"]["b.mp4"] = row([0.2, 0.3], faces=[2])
    with pytest.raises(gpu_check.StepFailedError, match="b.mp4: not the same faces in fp16 and fp32"):
        gpu_check.fp16_differences(runs)

    output = "....F\nFAILED tests/test_x.py::test_y - AssertionError: no\n1 failed, 4 passed, 2 skipped in 12.30s\n"
    assert gpu_check.pytest_summary(output) == {
        "summary": "1 failed, 4 passed, 2 skipped in 12.30s",
        "counts": {"failed": 1, "passed": 4, "skipped": 2},
        "failed": ["FAILED tests/test_x.py::test_y - AssertionError: no"],
    }


def test_predict_fp16_fails_when_fp16_moves_a_face_by_more_than_0_01(monkeypatch, tmp_path):
    scores = {"fp16": [0.5, 0.62], "fp32": [0.5, 0.6]}
    runs = {
        name: {"a.mp4": {"score": 0.5, "face_scores": faces, "faces_per_frame": [2], "error": None}}
        for name, faces in scores.items()
    }
    monkeypatch.setattr(gpu_check, "worker", lambda context, args, timeout: runs)
    (tmp_path / "clips").mkdir()
    with pytest.raises(gpu_check.StepFailedError, match=r"fp16 moved a face's probability by 0.0200 \(at most 0.01\)"):
        gpu_check.step_predict_fp16(gpu_check.Context(tmp_path))


@pytest.mark.slow
def test_the_workers_run_on_the_cpu(tmp_path, capsys):
    """The GPU steps' code, run on the CPU: a typo must not wait for a GPU host to show."""
    losses = gpu_workers.fp16_losses("sam_sgd", torch.device("cpu"), 3, 32, 4)
    assert len(losses) == 3 and all(0 < loss < 10 for loss in losses)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=1", "--standalone"]
    result = subprocess.run(
        [*torchrun, str(REPO_ROOT / "tools" / "gpu_workers.py"), "ddp", "--device", "cpu", "--steps", "1"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    ddp = _last_json(result.stdout)
    assert ddp["backend"] == "gloo" and ddp["world_size"] == 1 and ddp["replicas_in_sync"] is True

    clips = tmp_path / "clips"
    gpu_workers.write_clips(clips, 1, 4, 480, 270)
    args = ["--videos", str(clips), "--work", str(tmp_path / "work"), "--device", "cpu", "--encoder", "resnet18"]
    assert gpu_workers.main(["predict", *args, "--size", "64"]) == 0
    report = gpu_check.fp16_differences(_last_json(capsys.readouterr().out))
    assert report["faces"] == 4 and report["max_abs_dp"] == 0.0, "on the CPU both runs are fp32"


def test_the_summary_is_strict_json_whatever_a_step_reports(monkeypatch, tmp_path, capsys):
    """A step that reports a NaN or an infinity (a loss, a time) must not make the summary invalid
    JSON: a reader of the last line would get nothing at all."""

    def reports_nan(context):
        return {"losses": [0.5, float("nan")], "seconds_per_video": float("inf"), "nested": {"low": -math.inf}}

    monkeypatch.setattr(gpu_check, "RUNNERS", {"train_fp16": reports_nan})
    monkeypatch.setattr(gpu_check, "cuda_status", lambda: CUDA)
    out = tmp_path / "summary.json"
    assert gpu_check.main(["--steps", "train_fp16", "--out", str(out)]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    summary = json.loads(line, parse_constant=_refuse)
    step = summary["steps"]["train_fp16"]
    assert (step["losses"], step["seconds_per_video"], step["nested"]) == ([0.5, "nan"], "inf", {"low": "-inf"})
    assert json.loads(out.read_text(), parse_constant=_refuse) == summary


def _refuse(constant):
    raise ValueError(f"{constant} is not JSON")
