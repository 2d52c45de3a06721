"""The requirement check that run_all.sh and run_tests.sh use to decide whether to pip install."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from tests.conftest import REPO_ROOT

CHECK = [sys.executable, str(REPO_ROOT / "tools" / "check_requirements.py")]


def _check(tmp_path, lines: str) -> subprocess.CompletedProcess:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(lines)
    return subprocess.run([*CHECK, str(requirements)], capture_output=True, text=True, timeout=60)


def test_every_project_requirement_is_checked(tmp_path):
    """Each line of requirements.txt, as written there (pins, ranges, comments), with a version out of
    reach added, is reported: none is skipped, so run_tests.sh's "nothing missing" is worth something."""
    lines = [raw.split("#", 1)[0].strip() for raw in (REPO_ROOT / "requirements.txt").read_text().splitlines()]
    lines = [line for line in lines if line]
    names = [re.match(r"[A-Za-z0-9_.\-]+", line).group(0) for line in lines]
    assert {"torch", "facenet-pytorch", "openvino", "gradio", "pytest"} <= set(names)
    unreachable = [f"{line},>=9999" if re.search(r"[<>=!~]", line) else f"{line}>=9999" for line in lines]
    result = _check(tmp_path, "\n".join(unreachable) + "\n")
    assert result.returncode == 1
    reported = result.stdout.splitlines()
    assert [line.split(":")[0].lower() for line in reported] == [name.lower() for name in names], result.stdout
    assert all("installed," in line and "9999" in line for line in reported), result.stdout


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


def test_a_test_that_reads_shared_data_without_its_marker_fails(tmp_path):
    """`-m "not shared_data"` must leave out every test that needs ../shared/data: conftest fails a
    test that asks for it unmarked, directly or through a fixture, wherever the data is."""
    tests = tmp_path / "repo" / "tests"
    tests.mkdir(parents=True)
    (tests / "conftest.py").write_text((REPO_ROOT / "tests" / "conftest.py").read_text())
    (tests / "test_sample.py").write_text(
        "import pytest\n"
        "from conftest import shared_data\n\n"
        "@pytest.fixture\n"
        "def faces():\n"
        "    return shared_data('faces')\n\n"
        "@pytest.mark.shared_data\n"
        "def test_marked():\n"
        "    shared_data('faces')\n\n"
        "def test_unmarked():\n"
        "    shared_data('faces')\n\n"
        "def test_unmarked_through_a_fixture(faces):\n"
        "    pass\n"
    )
    (tests.parent / "pytest.ini").write_text("[pytest]\nmarkers =\n    shared_data: sample data\n")
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"]
    environment = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}  # no installed plugin is needed
    result = subprocess.run(command, cwd=tests.parent, env=environment, capture_output=True, text=True, timeout=120)
    for name in ("test_unmarked", "test_unmarked_through_a_fixture"):
        message = f"tests/test_sample.py::{name} uses ../shared/data but is not marked @pytest.mark.shared_data"
        assert message in result.stdout, result.stdout
    assert result.returncode == 1 and "1 failed, 1 skipped, 1 error" in result.stdout, result.stdout
    # the marker is what -m "not shared_data" goes by: the marked test is left out, the others run (and fail)
    unmarked = subprocess.run(
        [*command, "-m", "not shared_data"],
        cwd=tests.parent,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "1 failed, 1 deselected, 1 error" in unmarked.stdout, unmarked.stdout
