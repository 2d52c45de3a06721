"""Shared fixtures (a small demo world made once per session, the optional ../shared data) and the
leak check: a test that leaves an event loop, socket, file, thread or process behind fails itself.

This file imports nothing of the project at module level: test_setup_tools runs a copy of it alone.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import threading
import warnings
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"

# The warning albumentations 2.x gives for an argument it does not know (it then uses the default):
# the augmentation tests turn it, and only it, into an error.
ALBUMENTATIONS_ARGUMENT_WARNING_AS_ERROR = r"error:Argument\(s\) .* are not valid for transform:UserWarning"


# Set for each test before its fixtures; in the environment, because pytest's copy of this module
# (conftest) and the tests' (tests.conftest) are two modules.
_MARKED = "DEEPFAKE_TEST_MARKED_SHARED_DATA"

# Under pytest-xdist (run_tests.sh runs 2 workers), each worker's torch and the commands its tests
# start share the cores out: two workers of 2 threads each on 2 cores spend their time waiting for
# each other's threads. Set before any test module imports torch.
if os.environ.get("PYTEST_XDIST_WORKER"):
    _workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // _workers)))

# The files that take longest, longest first: pytest-xdist hands out whole files in collection order
# (run_tests.sh: --dist loadfile --no-loadscope-reorder), and one of these started last would keep
# one worker busy long after the other ran out of files.
LONGEST_FILES = (
    "test_preprocess_pipeline.py",  # makes the demo world while the other worker runs the next two
    "test_walkthrough.py",  # (neither this nor test_train needs the demo world)
    "test_predict.py",
    "test_train.py",
    "test_temporal.py",
    "test_app_main.py",
    "test_fit_ensemble_and_bench.py",
    "test_app.py",
    "test_predict_resume.py",
    "test_perturbation_vc.py",
    "test_cli_errors.py",
    "test_gpu_check.py",
    "test_detect.py",
    "test_fast_mode_fidelity.py",
    "test_evaluate.py",
    "test_timeliness.py",
    # 10-40 CPU-seconds each in a census of the whole suite (issue 28), not to be left for the end
    "test_photo_datasets.py",
    "test_detector_scale.py",
    "test_robustness.py",
    "test_wheelhouse.py",
    "test_runtime.py",
    "test_demo_world.py",
    "test_augment_randomness.py",
    # other papers' detectors: 5-10 CPU-seconds each (B4 at 380 px, real clips through MTCNN)
    "test_sbi_detector.py",
    "test_deepfakebench_parity.py",
    "test_sbi_parity.py",
    "test_gend_parity.py",
)

# The fixtures' module, imported by the test modules that use it (pytest_plugins): rewritten
# assertions there too, and no warning that it was imported before pytest could rewrite it.
pytest.register_assert_rewrite("tests.http_server")


def shared_data(*parts: str) -> Path:
    """A path under ../shared/data, or a skip when the sample data is not there. Only a test marked
    `@pytest.mark.shared_data` (or one using a fixture that calls this) may ask: `-m "not shared_data"`
    must leave out every test that needs the data."""
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

    from training.models.zoo import create_model

    torch.manual_seed(seed)
    state = create_model("resnet18").state_dict()
    imagenet = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    torch.save({"encoder": "resnet18", "input_size": input_size, **imagenet, "state_dict": state}, path)
    return path


@pytest.fixture(scope="session", autouse=True)
def runtime_cache(tmp_path_factory) -> Path:
    """Models exported for OpenVINO go to a folder of this session, not the user's cache."""

    folder = tmp_path_factory.mktemp("runtime_cache")
    previous = os.environ.get("DEEPFAKE_DETECTOR_CACHE")
    os.environ["DEEPFAKE_DETECTOR_CACHE"] = str(folder)
    yield folder
    if previous is None:
        os.environ.pop("DEEPFAKE_DETECTOR_CACHE", None)
    else:
        os.environ["DEEPFAKE_DETECTOR_CACHE"] = previous


@pytest.fixture(scope="session", autouse=True)
def detections_shared_between_workers(tmp_path_factory, pytestconfig) -> None:
    """Under pytest-xdist, MTCNN's answers (tests/detection_memo.py) written in this run's folder,
    where the other workers read them. pytest_runtest_setup has imported tests.detection_memo by
    now if the project's face detector was imported; a module that asks for the memo imports it
    when it is collected. A worker is known by its workerinput, not by PYTEST_XDIST_WORKER, which a
    pytest started by a test inherits (its folder's parent would outlive the run)."""
    detection_memo = sys.modules.get("tests.detection_memo")
    if detection_memo is not None and hasattr(pytestconfig, "workerinput"):
        detection_memo.shared_folder = tmp_path_factory.getbasetemp().parent / "mtcnn_answers"


@pytest.fixture(scope="session")
def demo_world(tmp_path_factory) -> Path:
    """6 training videos (2 real, 4 fake) and 2 test videos, as `make_demo_data` writes them. Tests
    only read it (test_demo_world remakes clips in a copy). Under pytest-xdist the workers share
    one, made by the first that asks for it (the others wait on a lock in the run's folder). Made
    in this process (--workers 1): the same bytes as a pool's, without starting two interpreters
    that import torch (test_demo_world's rerun remakes clips with the pool and compares)."""
    import fcntl

    from preprocess import make_demo_data

    arguments = ["--videos", "6", "--test-videos", "2", "--seed", "1", "--workers", "1"]
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        out = tmp_path_factory.mktemp("demo") / "world"
        make_demo_data.main(["--out", str(out), *arguments])
        return out
    shared = tmp_path_factory.getbasetemp().parent  # this run's folder, above each worker's own
    out, done = shared / "demo_world", shared / "demo_world.done"
    with open(shared / "demo_world.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():  # a worker that failed part way leaves no mark: the next resumes the world
            make_demo_data.main(["--out", str(out), *arguments])
            done.touch()
    return out


def dfdc_metadata(root: Path) -> dict[Path, dict]:
    """{video path: metadata entry} over every dfdc_train_part_*/metadata.json under root."""
    entries = {}
    for metadata in sorted(root.glob("dfdc_train_part_*/metadata.json")):
        for name, entry in json.loads(metadata.read_text()).items():
            entries[metadata.parent / name] = entry
    return entries


def run_until_killed(script: str, args: list[str], timeout: float = 300, env: dict[str, str] | None = None) -> None:
    """Run `script` (Python code that arranges its own SIGKILL at a known point) with `args` as
    sys.argv[1:] and `env` added to the environment, and check that it died of that signal: a kill
    at a known point, not a race."""
    import signal
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    assert result.returncode == -signal.SIGKILL, (
        f"expected death by SIGKILL, got {result.returncode}:\n{result.stderr[-3000:]}"
    )


# ---------------------------------------------------------------- leak check
#
# After each test's teardown the objects it made are garbage-collected with ResourceWarnings and
# unraisable exceptions recorded: an unclosed event loop, socket, file or still-running subprocess
# found there fails that test (as a teardown error), instead of failing whichever later test the
# interpreter happens to collect it in. Objects alive at the end of a module are frozen out of
# later collections (gc.freeze), so a test pays only for what its module made and keeps: collecting
# every object (0.3-0.6 s once torch and timm are imported) at each of the suite's ~94 module ends
# cost ~40 CPU-seconds. A module that keeps more than FREEZE_ABOVE_OBJECTS (one that imports gradio,
# say) has them frozen after the test that passed it, and everything is unfrozen and collected at
# the module's end (its fixtures finalised); everything is also collected at the end of the
# session, so an object that outlived its module and was dropped later is found there. Threads and
# child processes still alive at the end of a module that were not there at its start fail its last
# test, but for the process-wide helpers meant to outlive it: preprocess.faces.face_detector's shared
# pools, tqdm's monitor, the sender that `import openvino` starts for its telemetry, and
# multiprocessing's resource tracker and forkserver. Each thread is labelled with the module that
# started it, for the report.

LONG_LIVED_THREADS = ("tqdm_monitor",)
LONG_LIVED_THREAD_STARTERS = ("openvino_telemetry.",)
_THREADING_MODULES = ("threading", "concurrent.futures.thread", "concurrent.futures._base")
_start_thread = threading.Thread.start


def _start_and_label(thread: threading.Thread, *args, **kwargs):
    frame = sys._getframe(1)
    while frame and frame.f_globals.get("__name__") in _THREADING_MODULES:
        frame = frame.f_back
    thread._started_by = frame.f_globals.get("__name__", "?") if frame else "?"
    return _start_thread(thread, *args, **kwargs)


# pytest imports this file as `conftest` and the tests as `tests.conftest`: label once
if not hasattr(threading.Thread.start, "labels_its_starter"):
    _start_and_label.labels_its_starter = True
    threading.Thread.start = _start_and_label
# multiprocessing's helpers, started once and shared by every later process start
LONG_LIVED_PROCESSES = ("from multiprocessing.resource_tracker import", "from multiprocessing.forkserver import")
_module_start: dict[str, tuple[set, set]] = {}


def _child_pids() -> set[int]:
    try:
        children = Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read_text().split()
    except OSError:
        return set()
    return {
        int(pid) for pid in children if not any(helper in _command_line(int(pid)) for helper in LONG_LIVED_PROCESSES)
    }


def _command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "(gone)"


def _alive_threads() -> set[threading.Thread]:
    return {thread for thread in threading.enumerate() if thread is not threading.main_thread() and thread.is_alive()}


def _shared_pool_threads() -> set[threading.Thread]:
    """The threads of preprocess.faces.face_detector.shared_pool's pools, kept for the process on purpose."""
    face_detector = sys.modules.get("preprocess.faces.face_detector")
    pools = getattr(face_detector, "_pools", {}) if face_detector else {}
    return {thread for pool in list(pools.values()) for thread in pool._threads}


def collected_leaks() -> list[str]:
    """What collecting garbage now finds left open: ResourceWarnings and exceptions in finalisers."""
    unraisable: list[str] = []
    previous_hook = sys.unraisablehook
    sys.unraisablehook = lambda info: unraisable.append(f"{info.exc_type.__name__}: {info.exc_value} ({info.object!r})")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ResourceWarning)
            gc.collect()
    finally:
        sys.unraisablehook = previous_hook
    return [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] + unraisable


def _module_boundary(item: pytest.Item, nextitem: pytest.Item | None) -> bool:
    return nextitem is None or nextitem.module is not item.module


def _new_threads_and_children(module: str) -> list[str]:
    threads, children = _module_start.pop(module, (set(), set()))
    left = [
        thread
        for thread in _alive_threads() - threads - _shared_pool_threads()
        if not thread.name.startswith(LONG_LIVED_THREADS)
        and not getattr(thread, "_started_by", "").startswith(LONG_LIVED_THREAD_STARTERS)
    ]
    for thread in left:  # a thread that is just finishing gets a moment
        thread.join(timeout=2)
    problems = [
        f"thread {t.name!r} started by {getattr(t, '_started_by', '?')} still running" for t in left if t.is_alive()
    ]
    return problems + [
        f"child process {pid} still running: {_command_line(pid)[:200]}" for pid in sorted(_child_pids() - children)
    ]


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist, LONGEST_FILES first (a stable sort: each file's tests keep their order)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        rank = {name: index for index, name in enumerate(LONGEST_FILES)}
        items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    os.environ[_MARKED] = item.nodeid if item.get_closest_marker("shared_data") else f"!{item.nodeid}"
    module = item.module.__name__ if item.module else item.nodeid
    _module_start.setdefault(module, (_alive_threads(), _child_pids()))
    if "preprocess.faces.face_detector" in sys.modules:
        from tests.detection_memo import record_detections  # MTCNN's answers, for the modules that ask

        record_detections()


def _restore_worker_threads() -> None:
    """A step run in-process (preprocess.steps, make_demo_data) sets torch's threads for the whole
    process: under pytest-xdist, give the worker back its share before the next test."""
    torch = sys.modules.get("torch")
    wanted = os.environ.get("OMP_NUM_THREADS", "")
    if not (os.environ.get("PYTEST_XDIST_WORKER") and torch is not None and wanted.isdigit()):
        return
    if torch.get_num_threads() != int(wanted):
        torch.set_num_threads(int(wanted))


# Above this many objects left unfrozen (collecting them costs ~1 ms per 2,000), a module's objects
# are frozen after each test and unfrozen at its end.
FREEZE_ABOVE_OBJECTS = 50_000
_leak_check = {"frozen_in_module": False, "collection_leaks": []}


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    """Freeze what importing the test modules made; what collecting it finds goes to the first test."""
    _leak_check["collection_leaks"] = collected_leaks()
    gc.freeze()


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None):
    result = yield
    _restore_worker_threads()
    boundary = _module_boundary(item, nextitem)
    if boundary and (_leak_check["frozen_in_module"] or nextitem is None):
        gc.unfreeze()
    leaks = _leak_check["collection_leaks"] + collected_leaks()
    _leak_check["collection_leaks"] = []
    if boundary:
        leaks += _new_threads_and_children(item.module.__name__ if item.module else item.nodeid)
    if boundary or len(gc.get_objects()) > FREEZE_ABOVE_OBJECTS:
        gc.freeze()
        _leak_check["frozen_in_module"] = not boundary
    if leaks:
        report = os.environ.get("DEEPFAKE_TEST_LEAKS_REPORT")
        if report:  # diagnosis: list every leak of a run instead of failing
            with open(report, "a") as out:
                out.writelines(f"{item.nodeid}\t{leak}\n" for leak in leaks)
        else:
            pytest.fail(f"{item.nodeid} left behind:\n  " + "\n  ".join(leaks[:20]), pytrace=False)
    return result
