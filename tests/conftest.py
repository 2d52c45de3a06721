"""Shared fixtures: a small demo world made once per session, and the optional ../shared data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.http_server import server, tls_server  # noqa: F401 (fixtures of the download tests)

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


# Set for each test before its fixtures; in the environment, because pytest's copy of this module
# (conftest) and the tests' (tests.conftest) are two modules.
_MARKED = "DEEPFAKE_TEST_MARKED_SHARED_DATA"


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    import os

    os.environ[_MARKED] = item.nodeid if item.get_closest_marker("shared_data") else f"!{item.nodeid}"


def shared_data(*parts: str) -> Path:
    """A path under ../shared/data, or a skip when the sample data is not there. Only a test marked
    `@pytest.mark.shared_data` (or one using a fixture that calls this) may ask: `-m "not shared_data"`
    must leave out every test that needs the data."""
    import os

    marked = os.environ.get(_MARKED, "")
    if marked.startswith("!"):
        pytest.fail(f"{marked[1:]} uses ../shared/data but is not marked @pytest.mark.shared_data")
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"sample data {path} is absent (it lives in ../shared/data beside the repository)")
    return path


def commands_take_cuda() -> bool:
    """Whether a command run without --device runs on CUDA here (they take the GPU where there is one)."""
    import torch

    return torch.cuda.is_available()


# Two runs' scores of the same faces agree to 1e-5 or better in fp32 on the CPU. On CUDA, with fp16
# autocast, TF32 and kernels picked per batch size, they agree to about 1e-3: held to the bound that
# tools/gpu_check.py holds fp16 against fp32 to.
CUDA_SCORE_TOLERANCE = 1e-2


def score_tolerance(on_cpu: float) -> float:
    """The tolerance for comparing scores of commands run without --device: `on_cpu` on the CPU."""
    return CUDA_SCORE_TOLERANCE if commands_take_cuda() else on_cpu


def save_tiny_checkpoint(path: Path, seed: int = 0, input_size: int = 64) -> Path:
    """A random ResNet-18 classifier in our checkpoint format (encoder, size and normalisation named)."""
    import torch

    from training.zoo import create_model

    torch.manual_seed(seed)
    state = create_model("resnet18").state_dict()
    imagenet = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    torch.save({"encoder": "resnet18", "input_size": input_size, **imagenet, "state_dict": state}, path)
    return path


@pytest.fixture(scope="session", autouse=True)
def runtime_cache(tmp_path_factory) -> Path:
    """Models exported for OpenVINO go to a folder of this session, not the user's cache."""
    import os

    folder = tmp_path_factory.mktemp("runtime_cache")
    previous = os.environ.get("DEEPFAKE_DETECTOR_CACHE")
    os.environ["DEEPFAKE_DETECTOR_CACHE"] = str(folder)
    yield folder
    if previous is None:
        os.environ.pop("DEEPFAKE_DETECTOR_CACHE", None)
    else:
        os.environ["DEEPFAKE_DETECTOR_CACHE"] = previous


@pytest.fixture(scope="session")
def demo_world(tmp_path_factory) -> Path:
    """6 training videos (2 real, 4 fake) and 2 test videos, as `make_demo_data` writes them."""
    from preprocess import make_demo_data

    out = tmp_path_factory.mktemp("demo") / "world"
    make_demo_data.main(["--out", str(out), "--videos", "6", "--test-videos", "2", "--seed", "1"])
    return out


def dfdc_metadata(root: Path) -> dict[Path, dict]:
    """{video path: metadata entry} over every dfdc_train_part_*/metadata.json under root."""
    entries = {}
    for metadata in sorted(root.glob("dfdc_train_part_*/metadata.json")):
        for name, entry in json.loads(metadata.read_text()).items():
            entries[metadata.parent / name] = entry
    return entries


def run_until_killed(script: str, args: list[str], timeout: float = 300) -> None:
    """Run `script` (Python code that arranges its own SIGKILL at a known point) with `args` as
    sys.argv[1:], and check that it died of that signal: a kill at a known point, not a race."""
    import signal
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", script, *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == -signal.SIGKILL, (
        f"expected death by SIGKILL, got {result.returncode}:\n{result.stderr[-3000:]}"
    )
