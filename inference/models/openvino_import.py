"""OpenVINO imported without its usage report.

`import openvino` imports its model converter, which sends a "general_import" event to Google
Analytics (openvino.tools.ovc, telemetry with `enable_opt_in_dialog=False`) unless the user's
~/intel/openvino_telemetry file declines or the CI variable is "true". This tool sends nothing
about its users: the first import of OpenVINO in a process goes through `openvino_module()`, which
declines the telemetry for the whole process (its consent is decided once, at that import)."""

from __future__ import annotations

import os
import sys
from types import ModuleType


def openvino_module() -> ModuleType:
    """The openvino package, imported with its telemetry declined for this process."""
    if "openvino" in sys.modules:
        return sys.modules["openvino"]
    before = os.environ.get("CI")
    os.environ["CI"] = "true"  # openvino_telemetry declines in CI (disable_in_ci=True in ovc)
    try:
        import openvino
    finally:
        if before is None:
            os.environ.pop("CI", None)
        else:
            os.environ["CI"] = before
    return openvino
