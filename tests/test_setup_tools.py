"""The requirement check that run_all.sh and run_tests.sh use to decide whether to pip install."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO_ROOT

CHECK = [sys.executable, str(REPO_ROOT / "tools" / "check_requirements.py")]


def _check(tmp_path, lines: str) -> subprocess.CompletedProcess:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(lines)
    return subprocess.run([*CHECK, str(requirements)], capture_output=True, text=True, timeout=60)


def test_the_project_requirements_are_satisfied_here():
    result = subprocess.run([*CHECK, str(REPO_ROOT / "requirements.txt")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout


def test_missing_and_too_old_packages_are_reported(tmp_path):
    result = _check(tmp_path, "# a comment\nnumpy>=1.0  # inline comment\nno-such-package-xyz\ntorch>=999\n")
    assert result.returncode == 1
    assert "no-such-package-xyz: not installed" in result.stdout
    assert "torch:" in result.stdout and ">=999" in result.stdout
    assert "numpy" not in result.stdout


def test_local_version_labels_satisfy_ranges(tmp_path):
    # CUDA wheels report versions such as 2.14.1+cu130
    assert _check(tmp_path, "torch>=2.4\n").returncode == 0


def test_requirements_exclude_what_the_design_rules_out():
    text = (REPO_ROOT / "requirements.txt").read_text().lower()
    names = {line.split("#")[0].strip().split(">")[0].split("=")[0].split("<")[0] for line in text.splitlines()}
    assert not names & {"apex", "dlib", "tensorflow", "keras"}
    assert "facenet-pytorch==2.5.3" in text
