"""What tools/gpu_check.py's steps need installed, as lines of requirements.txt (standard library
only, like check_requirements.py: it runs before anything is installed).

The four GPU steps (train_fp16, ddp_syncbn, predict_fp16, bench_b7) import torch, timm,
facenet-pytorch, PyAV, scikit-image (its photo) and what those pull, never the web page (gradio) nor
the CPU runtime (OpenVINO); albumentations is here for training on that host with the recipe's
augmentations (the steps train on synthetic batches). The suite step runs the whole test suite and
needs all of requirements.txt. tools/build_wheelhouse.py downloads the GPU steps' packages for a host that
cannot reach a package index.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import check_requirements

REPO_ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS = REPO_ROOT / "requirements.txt"
# Distributions the GPU steps import (tests/test_wheelhouse.py holds their imports to these
# and what these pull); the versions are requirements.txt's.
GPU_STEP_PACKAGES = (
    "torch",
    "torchvision",
    "timm",
    "albumentations",
    "facenet-pytorch",
    "opencv-python-headless",
    "av",
    "numpy",
    "pandas",
    "scikit-learn",
    "scikit-image",
    "tqdm",
    "pyyaml",
)
FULL_REQUIREMENT_STEPS = ("suite",)

logger = logging.getLogger("gpu_check")


def canonical_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(line: str) -> str:
    return re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", line).group(0)


def requirement_lines(names=None, path: Path = REQUIREMENTS) -> list[str]:
    """The lines of `path` (all, or those naming `names`), in its order; a ValueError naming any of
    `names` that no line names."""
    lines = check_requirements.requirement_lines(str(path))
    if names is None:
        return lines
    wanted = {canonical_name(name) for name in names}
    chosen = [line for line in lines if canonical_name(requirement_name(line)) in wanted]
    absent = wanted - {canonical_name(requirement_name(line)) for line in chosen}
    if absent:
        raise ValueError(f"{path}: no line for {', '.join(sorted(absent))}")
    return chosen


def step_requirements(step: str) -> list[str]:
    return requirement_lines(None if step in FULL_REQUIREMENT_STEPS else GPU_STEP_PACKAGES)


def unmet(lines: list[str]) -> dict[str, str]:
    """Each of `lines` this Python does not satisfy, with why ("gradio: not installed")."""
    return {line: problem for line in lines for problem in check_requirements.problems([line])}


def unmet_by_step(steps: list[str]) -> dict[str, dict[str, str]]:
    return {step: unmet(step_requirements(step)) for step in steps}


def install(lines: list[str], python: str = sys.executable) -> bool:
    """pip install `lines` into `python`'s environment (pip's output on standard error, so that the
    check's last line of standard output stays its JSON); whether pip succeeded."""
    logger.info("installing what the steps need: %s", " ".join(lines))
    command = [python, "-m", "pip", "install", "--disable-pip-version-check", *lines]
    return subprocess.run(command, stdout=2, check=False).returncode == 0  # fd 2: standard error


def unmet_after_install(steps: list[str], may_install: bool = True) -> dict[str, dict[str, str]]:
    """What each of `steps` lacks, after pip installed what they lack (when `may_install`, unless
    GPU_CHECK_NO_INSTALL=1)."""
    lacking = unmet_by_step(steps)
    lines = list(dict.fromkeys(line for step_lacks in lacking.values() for line in step_lacks))
    if lines and may_install and os.environ.get("GPU_CHECK_NO_INSTALL", "0") != "1":
        if not install(lines):
            logger.error("pip could not install %s (see above)", " ".join(lines))
        lacking = unmet_by_step(steps)
    return lacking
