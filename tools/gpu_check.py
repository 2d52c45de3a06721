"""Check a GPU host: the CUDA paths that CPU runs never take, in one run of under 8 minutes on one GPU.

    tools/gpu_check.sh [--steps train_fp16,ddp_syncbn,predict_fp16,bench_b7,suite] [--budget 470]
                       [--out FILE] [--dry-run] [--pytest-args "..."]

Steps (run in this order, each in its own process, each whatever became of the ones before; the
suite last, with the time that is left):
  train_fp16    20 fp16 steps with a GradScaler (training/loop/engine.py), plain SGD and SAM: every loss
                finite, and the mean of the last 5 below the mean of the first 5
  ddp_syncbn    torchrun on every GPU present: NCCL, SyncBatchNorm conversion, DDP fp16 steps, and
                replicas equal afterwards (with one GPU: a one-process NCCL group)
  predict_fp16  inference.predict in fp16 (CUDA's default) and with --fp32 on the same faces of
                generated clips, random tf_efficientnet_b7_ns at 380 px: max |dp| <= 0.01
  bench_b7      inference.bench --random-models 7 --encoder tf_efficientnet_b7_ns --device cuda:
                seconds per video and peak GPU memory of each mode
  suite         the test suite (pytest -x -q) with CUDA visible

Packages: the four GPU steps need the lines of requirements.txt for tools/gpu_requirements.py's
GPU_STEP_PACKAGES (not the web page's gradio nor OpenVINO), the suite all of requirements.txt.
What the chosen steps lack is pip-installed first, unless GPU_CHECK_NO_INSTALL=1 (a host without
a package index: docs/gpu.md, "A cluster without internet", for a wheelhouse); a step still lacking a package is
reported skipped, with what it lacks.

The last line of standard output is one JSON summary: each step's status (passed, failed or
skipped), seconds, error and numbers, strict JSON (a NaN or infinity a step reported is written as
the string "nan" or "inf"). The exit status is 0 only when every step passed. Without
CUDA nothing is run: every step is reported skipped ("no CUDA device") and the exit status is 1.
--dry-run prints the plan (steps, time limits, what each step lacks) as JSON and exits 0.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import gpu_requirements

REPO_ROOT = Path(__file__).resolve().parents[1]
WORKERS = REPO_ROOT / "tools" / "gpu_workers.py"
STEPS = ("train_fp16", "ddp_syncbn", "predict_fp16", "bench_b7", "suite")
LIMITS = {"train_fp16": 90, "ddp_syncbn": 90, "predict_fp16": 120, "bench_b7": 150, "suite": 600}  # seconds
BUDGET = 470  # seconds for all steps: under 8 minutes with the start-up
MIN_STEP_SECONDS = 20
MAX_FP16_DP = 0.01

logger = logging.getLogger("gpu_check")


class StepFailedError(Exception):
    """A step ran and its result is wrong; the message says how."""


@dataclass
class Context:
    work: Path  # a scratch folder for clips, checkpoints and outputs
    python: str = sys.executable
    gpus: int = 1
    pytest_args: list[str] = field(default_factory=list)
    deadline: float = float("inf")  # time.monotonic() by which every step must be done

    def limit(self, step: str) -> float:
        return min(LIMITS[step], self.deadline - time.monotonic())

    def clips(self) -> Path:
        """Two 1080p clips with a face (made once, shared by predict_fp16 and bench_b7)."""
        folder, partial = self.work / "clips", self.work / "clips.partial"
        if not folder.is_dir():
            shutil.rmtree(partial, ignore_errors=True)
            worker(self, ["clips", "--out", str(partial)], min(120, self.deadline - time.monotonic()))
            partial.rename(folder)
        return folder


def run_command(command: list[str], timeout: float, cwd: Path = REPO_ROOT) -> str:
    """stdout of `command`; a StepFailedError on a time-out or a non-zero exit, with the end of its stderr."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    try:
        result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        raise StepFailedError(f"timed out after {timeout:.0f} s: {shlex.join(command)}") from None
    if result.returncode != 0:
        tail = " | ".join((result.stderr.strip() or result.stdout.strip()).splitlines()[-5:])
        raise StepFailedError(f"exit status {result.returncode}: {shlex.join(command)}: {tail}")
    return result.stdout


def last_json(stdout: str, what: str) -> dict:
    """The last line of `stdout` that holds a JSON object."""
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise StepFailedError(f"{what} printed no JSON result")


def worker(context: Context, args: list[str], timeout: float) -> dict:
    return last_json(run_command([context.python, str(WORKERS), *args], timeout), f"gpu_workers {args[0]}")


def falling_loss_problem(losses: list[float], window: int = 5) -> str | None:
    """Why `losses` are not a healthy run (a non-finite loss, or the last `window` steps' mean not
    below the first's), or None."""
    if len(losses) < 2 * window:
        return f"{len(losses)} losses, fewer than {2 * window}"
    bad = [index for index, value in enumerate(losses) if not math.isfinite(value)]
    if bad:
        return f"non-finite loss at steps {bad}"
    first, last = sum(losses[:window]) / window, sum(losses[-window:]) / window
    if not last < first:
        return f"loss did not fall: mean of the first {window} steps {first:.4f}, of the last {window} {last:.4f}"
    return None


def step_train_fp16(context: Context) -> dict:
    result = worker(context, ["train", "--steps", "20"], context.limit("train_fp16"))
    report, problems = {}, []
    for name, losses in result.items():
        report[name] = {"first_5_mean": sum(losses[:5]) / 5, "last_5_mean": sum(losses[-5:]) / 5, "losses": losses}
        problem = falling_loss_problem(losses)
        if problem:
            problems.append(f"{name}: {problem}")
    if problems:
        raise StepFailedError("; ".join(problems))
    return report


def step_ddp_syncbn(context: Context) -> dict:
    command = [context.python, "-m", "torch.distributed.run", f"--nproc_per_node={context.gpus}", "--standalone"]
    result = last_json(run_command([*command, str(WORKERS), "ddp"], context.limit("ddp_syncbn")), "the DDP run")
    problems = []
    if result.get("backend") != "nccl":
        problems.append(f"backend {result.get('backend')}, not nccl")
    if not result.get("sync_batchnorm_layers"):
        problems.append("no SyncBatchNorm layer after the conversion")
    if result.get("replicas_in_sync") is not True:
        problems.append("replicas ended with different weights")
    if not result.get("losses") or not all(map(math.isfinite, result["losses"])):
        problems.append(f"losses not all finite: {result.get('losses')}")
    if problems:
        raise StepFailedError("; ".join(problems))
    return result


def fp16_differences(runs: dict[str, dict[str, dict]]) -> dict:
    """Max and mean |p(fp16) - p(fp32)| over every face of every video both runs scored; a
    StepFailedError when the runs did not see the same faces."""
    fp16, fp32 = runs["fp16"], runs["fp32"]
    if sorted(fp16) != sorted(fp32) or not fp16:
        raise StepFailedError(f"the two runs scored different videos: {sorted(fp16)} and {sorted(fp32)}")
    differences, video_differences = [], []
    for video, row in fp16.items():
        other = fp32[video]
        if row.get("error") or other.get("error"):
            raise StepFailedError(f"{video}: {row.get('error') or other.get('error')}")
        if row.get("faces_per_frame") != other.get("faces_per_frame") or not row.get("face_scores"):
            raise StepFailedError(f"{video}: not the same faces in fp16 and fp32")
        differences += [abs(a - b) for a, b in zip(row["face_scores"], other["face_scores"], strict=True)]
        video_differences.append(abs(row["score"] - other["score"]))
    scores = [score for row in fp32.values() for score in row["face_scores"]]
    return {
        "faces": len(differences),
        "max_abs_dp": max(differences),
        "mean_abs_dp": sum(differences) / len(differences),
        "max_abs_video_dp": max(video_differences),
        "fp32_probability_range": [min(scores), max(scores)],
    }


def step_predict_fp16(context: Context) -> dict:
    clips = context.clips()
    runs = worker(
        context,
        ["predict", "--videos", str(clips), "--work", str(context.work / "predict")],
        context.limit("predict_fp16"),
    )
    if "error" in runs:
        raise StepFailedError(runs["error"])
    report = fp16_differences(runs)
    if not report["max_abs_dp"] <= MAX_FP16_DP:
        raise StepFailedError(f"fp16 moved a face's probability by {report['max_abs_dp']:.4f} (at most {MAX_FP16_DP})")
    return report


def step_bench_b7(context: Context) -> dict:
    clips = context.clips()
    command = [context.python, "-m", "inference.bench", "--test-dir", str(clips), "--random-models", "7"]
    command += ["--encoder", "tf_efficientnet_b7_ns", "--device", "cuda", "--videos", "2"]
    stdout = run_command(command, context.limit("bench_b7"))
    report = json.loads(stdout[stdout.index("{") :])
    peaks = report.get("gpu_memory_peak_mb")
    if not peaks:
        raise StepFailedError(f"no GPU memory peak reported (device {report.get('device')})")
    return {
        "seconds_per_video": report["mean_total_s"],
        "gpu_memory_peak_mb": peaks,
        "max_score_difference": report.get("max_score_difference"),
    }


def pytest_summary(stdout: str) -> dict:
    """pytest -q's last line ("3 failed, 40 passed, 2 skipped in 12.3s") as counts, and the FAILED lines."""
    lines = stdout.strip().splitlines()
    summary = lines[-1].strip("= ") if lines else ""
    counts = {}
    for part in summary.split(" in ")[0].split(", "):
        number, _, word = part.partition(" ")
        if number.isdigit():
            counts[word] = int(number)
    return {
        "summary": summary,
        "counts": counts,
        "failed": [line for line in lines if line.startswith(("FAILED", "ERROR"))],
    }


def step_suite(context: Context) -> dict:
    command = [context.python, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *context.pytest_args]
    timeout = context.limit("suite")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    try:
        result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired as expired:
        partial = expired.stdout.decode() if isinstance(expired.stdout, bytes) else (expired.stdout or "")
        raise StepFailedError(
            f"timed out after {timeout:.0f} s (pass --budget, or --pytest-args to run less): {partial[-300:]}"
        ) from None
    report = pytest_summary(result.stdout)
    if result.returncode != 0:
        raise StepFailedError(
            f"pytest exit status {result.returncode}: {report['summary']}; {' | '.join(report['failed'][:5])}"
        )
    return report


RUNNERS: dict[str, Callable[[Context], dict]] = {
    "train_fp16": step_train_fp16,
    "ddp_syncbn": step_ddp_syncbn,
    "predict_fp16": step_predict_fp16,
    "bench_b7": step_bench_b7,
    "suite": step_suite,
}


def plan(steps: list[str], context: Context, budget: float, unmet: dict[str, dict[str, str]]) -> dict:
    """What a run would do, for --dry-run."""
    return {
        "dry_run": True,
        "budget_s": budget,
        "steps": {
            name: {"status": "planned", "limit_s": min(LIMITS[name], budget), "missing": list(unmet[name].values())}
            for name in steps
        },
        "pytest_args": context.pytest_args,
        "work": str(context.work),
    }


def run_steps(
    steps: list[str],
    context: Context,
    cuda: dict,
    runners: dict[str, Callable[[Context], dict]] | None = None,
    unmet: dict[str, dict[str, str]] | None = None,
) -> dict:
    """Each step's result, whatever became of the steps before it; "ok" only when every one passed.
    A step with `unmet` requirements is skipped."""
    runners, unmet = runners or RUNNERS, unmet or {}
    results: dict[str, dict] = {}
    started = time.monotonic()
    for name in steps:
        begun = time.monotonic()
        entry: dict = {"status": "passed", "seconds": 0.0, "error": None}
        if not cuda["available"]:
            entry.update(status="skipped", error=f"no CUDA device: {cuda['reason']}")
        elif unmet.get(name):
            entry.update(status="skipped", error=f"packages missing: {'; '.join(unmet[name].values())}")
        elif context.deadline - begun < MIN_STEP_SECONDS:
            entry.update(status="skipped", error="out of time: the budget was spent by the steps before")
        else:
            try:
                entry.update(runners[name](context))
            except StepFailedError as failure:
                entry.update(status="failed", error=str(failure))
            except Exception as error:  # a bug in a step is that step's failure, not the end of the check
                entry.update(status="failed", error=f"{type(error).__name__}: {error}")
        entry["seconds"] = round(time.monotonic() - begun, 1)
        results[name] = entry
        logger.info("%s: %s in %.1f s %s", name, entry["status"], entry["seconds"], entry["error"] or "")
    ok = bool(results) and all(entry["status"] == "passed" for entry in results.values())
    summary = {"ok": ok, "cuda": cuda, "seconds": round(time.monotonic() - started, 1), "steps": results}
    if not cuda["available"]:
        summary["error"] = f"no GPU here ({cuda['reason']}): nothing was checked"
    return summary


def cuda_status() -> dict:
    """Whether CUDA works here, the GPUs' names and the versions, or why not."""
    try:
        import torch
    except ImportError as error:
        return {"available": False, "torch": None, "cuda": None, "reason": f"torch cannot be imported ({error})"}

    status = {"available": torch.cuda.is_available(), "torch": torch.__version__, "cuda": torch.version.cuda}
    if status["available"]:
        status["devices"] = [torch.cuda.get_device_name(index) for index in range(torch.cuda.device_count())]
    else:
        status["reason"] = "torch.cuda.is_available() is False" + ("" if torch.version.cuda else " (a CPU-only torch)")
    return status


def step_list(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in STEPS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown step(s) {', '.join(unknown) or '(none given)'}: choose from {', '.join(STEPS)}"
        )
    return [name for name in STEPS if name in names]  # the run order, whatever the order given


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="tools/gpu_check.sh", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=step_list, default=list(STEPS), help=f"comma-separated, of {', '.join(STEPS)}")
    parser.add_argument("--budget", type=float, default=BUDGET, help=f"seconds for all steps (default {BUDGET})")
    parser.add_argument("--out", type=Path, help="also write the JSON summary to this file")
    parser.add_argument("--work", type=Path, help="scratch folder (default: a temporary one, removed)")
    parser.add_argument("--pytest-args", default="", help="extra pytest arguments for the suite step, one string")
    parser.add_argument("--dry-run", action="store_true", help="print the plan, run nothing")
    args = parser.parse_args(argv)
    if not 0 < args.budget < math.inf:  # NaN too: it would reach the JSON summary
        parser.error(f"--budget must be a positive number of seconds, got {args.budget:g}")
    try:
        args.pytest_args = shlex.split(args.pytest_args)
    except ValueError as error:
        parser.error(f"--pytest-args {args.pytest_args!r}: {error} (one string, split as a shell would)")
    return args


def finite_json(value):
    """`value` with every float that JSON cannot hold (NaN, infinity) written as a string ("nan",
    "inf"), so that the summary is strict JSON whatever a step reported."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: finite_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(item) for item in value]
    return value


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    unmet = gpu_requirements.unmet_after_install(args.steps, may_install=not args.dry_run)
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as scratch:
        context = Context(Path(args.work or scratch), pytest_args=args.pytest_args)
        if args.dry_run:
            summary = plan(args.steps, context, args.budget, unmet)
        else:
            cuda = cuda_status()
            context.gpus = len(cuda.get("devices", [])) or 1
            context.deadline = time.monotonic() + args.budget
            summary = run_steps(args.steps, context, cuda, unmet=unmet)
            if "error" in summary:
                logger.error("%s", summary["error"])
    line = json.dumps(finite_json(summary), allow_nan=False)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        temporary = args.out.with_name(f".{args.out.name}.partial")
        temporary.write_text(line + "\n")
        temporary.replace(args.out)
    print(line)
    return 0 if args.dry_run or summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
