"""Importing OpenVINO through the project sends no usage report. A plain `import openvino`, with no
consent file in the home folder and outside CI, has its model converter (openvino.tools.ovc) send a
Google Analytics event at import; the project's import declines that telemetry for the process."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

# What a plain import would decide here, asked without importing openvino (so nothing is sent):
# the converter's telemetry shows no dialog, so NO_FILE means it reports.
PLAIN_DECISION = """
from openvino_telemetry.utils.opt_in_checker import OptInChecker
print(OptInChecker().check(enable_opt_in_dialog=False, disable_in_ci=True).name)
"""
OUR_IMPORT = """
import os
from inference.models.openvino_import import openvino_module
openvino_module()
import openvino_telemetry
print(openvino_telemetry.Telemetry().consent, os.environ.get("CI"))
"""


def _run(code: str, home) -> str:
    environment = {name: value for name, value in os.environ.items() if name not in ("CI", "TF_BUILD", "JENKINS_URL")}
    environment.update(HOME=str(home), PYTHONPATH=str(REPO_ROOT))
    answer = subprocess.run(
        [sys.executable, "-c", code], env=environment, capture_output=True, text=True, timeout=120, check=True
    )
    return answer.stdout.strip().splitlines()[-1]


@pytest.mark.skipif(
    not all(importlib.util.find_spec(name) for name in ("openvino", "openvino_telemetry")),
    reason="OpenVINO with its telemetry package is not installed",
)
def test_the_projects_import_of_openvino_declines_its_telemetry(tmp_path):
    assert _run(PLAIN_DECISION, tmp_path) == "NO_FILE", "a plain import would report from here"
    assert _run(OUR_IMPORT, tmp_path) == "False None", "declined, and the CI variable left unset as it was"
    assert not list(tmp_path.rglob("openvino_telemetry*")), "no consent file or client id written for the user"
