"""The house's layout (docs/architecture.md): imports go down only, and every folder stays small.

Read with `ast`, nothing imported, so the check costs milliseconds. Every import counts, those
inside functions too (a lazy import is still a dependency).

- common imports none of preprocess, training or inference; preprocess imports neither training
  nor inference; training does not import inference.
- Inside inference, the commands (the modules at its top, `python -m inference.X`) are short and
  imported by nothing in inference, and a subpackage imports only subpackages below it in
  INFERENCE_ORDER.
- Inside training and preprocess likewise: a subpackage imports only those below it in
  TRAINING_ORDER / PREPROCESS_ORDER, and the modules at the stage's top (training's commands;
  preprocess' steps and what they share) sit above them all.
- No folder holds more than MAX_MODULES modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

# Stages, low to high: each may import the ones before it, never one after.
STAGES = ("common", "preprocess", "training", "inference")
# inference's subpackages, low to high: each may import the ones before it (and the stages below).
INFERENCE_ORDER = (
    "distortions",
    "scoring",
    "calibration",
    "models",
    "fitting",
    "pipeline",
    "detectors",
    "prediction",
    "evaluation",
    "serving",
    "benchmarks",
)
# training's subpackages, low to high; its commands (`python -m training.X`) sit on top.
TRAINING_ORDER = ("data", "models", "loop", "settings")
TRAINING_COMMANDS = {"train", "plot_log", "bench", "compare"}
# preprocess' subpackages, low to high; its steps (`python -m preprocess.X`) and what they share sit on top.
PREPROCESS_ORDER = ("faces", "demo_world")
ORDERS = {"inference": INFERENCE_ORDER, "training": TRAINING_ORDER, "preprocess": PREPROCESS_ORDER}
COMMANDS = {"predict", "detect", "app", "weights", "calibrate", "evaluate", "score", "bench", "fit_ensemble"}
MAX_MODULES = 20
# A command parses its options, calls its work in a subpackage and reports: a few lines.
MAX_COMMAND_LINES = 30
# tests/ is not checked: one file per concern of the code, read by pytest, and several people add
# to it at once.


def modules(stage: str) -> dict[str, Path]:
    """Each module of a stage by its dotted name."""
    root = REPO_ROOT / stage
    return {
        ".".join(path.relative_to(REPO_ROOT).with_suffix("").parts).removesuffix(".__init__"): path
        for path in sorted(root.rglob("*.py"))
    }


def imported(path: Path, name: str) -> set[str]:
    """The project modules (or packages) `path` imports, anywhere in it, as dotted names."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # `from inference import predict`
    return {dotted for dotted in found if dotted.split(".")[0] in STAGES}


def all_imports() -> dict[str, set[str]]:
    return {name: imported(path, name) for stage in STAGES for name, path in modules(stage).items()}


def test_each_stage_imports_only_the_stages_below_it():
    wrong = []
    for name, targets in all_imports().items():
        rank = STAGES.index(name.split(".")[0])
        wrong += [f"{name} imports {target}" for target in targets if STAGES.index(target.split(".")[0]) > rank]
    assert not wrong, "imports that go up a stage:\n" + "\n".join(sorted(wrong))


def level(name: str) -> tuple[int, str] | None:
    """Where a module stands inside its stage: (its subpackage's rank, subpackage) or, for a module at
    the stage's top, (len(order), "top"); None for the stage's package itself or a stage without order."""
    parts = name.split(".")
    order = ORDERS.get(parts[0])
    if order is None or len(parts) < 2:
        return None
    if parts[1] in order:
        return order.index(parts[1]), parts[1]
    return len(order), "top"


@pytest.mark.parametrize("stage", sorted(ORDERS))
def test_imports_go_down_a_stages_subpackages(stage):
    everything = set(all_imports())
    wrong = []
    for name, targets in all_imports().items():
        here = level(name)
        if here is None or name.split(".")[0] != stage:
            continue
        for target in targets:
            there = level(target)
            if there is None or target not in everything or target.split(".")[0] != stage:
                continue  # a name imported from a package (`from inference.models import ensemble`)
            if there[0] > here[0] or (stage == "inference" and there[1] == "top"):
                wrong.append(f"{name} ({here[1]}) imports {target} ({there[1]})")
    top = "commands, and no module imports a command" if stage == "inference" else "the modules at its top"
    assert not wrong, f"{stage}'s order is {' < '.join(ORDERS[stage])} < {top}:\n" + "\n".join(sorted(wrong))


def test_only_commands_sit_at_the_top_of_inference():
    top = {path.stem for path in (REPO_ROOT / "inference").glob("*.py")} - {"__init__"}
    assert top == COMMANDS, f"modules at the top of inference that are not commands: {sorted(top - COMMANDS)}"
    folders = {path.name for path in (REPO_ROOT / "inference").iterdir() if (path / "__init__.py").exists()}
    assert folders == set(INFERENCE_ORDER), "a subpackage of inference missing from INFERENCE_ORDER (or gone)"


def test_only_commands_sit_at_the_top_of_training():
    top = {path.stem for path in (REPO_ROOT / "training").glob("*.py")} - {"__init__"}
    assert top == TRAINING_COMMANDS, (
        f"modules at the top of training that are not commands: {sorted(top - TRAINING_COMMANDS)}"
    )


@pytest.mark.parametrize("stage", sorted(ORDERS))
def test_every_subpackage_is_in_its_stages_order(stage):
    folders = {path.name for path in (REPO_ROOT / stage).iterdir() if (path / "__init__.py").exists()}
    assert folders == set(ORDERS[stage]), f"a subpackage of {stage} missing from its order (or gone)"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_command_is_short(command):
    lines = len((REPO_ROOT / "inference" / f"{command}.py").read_text().splitlines())
    assert lines <= MAX_COMMAND_LINES, f"inference/{command}.py: {lines} lines; its work belongs in a subpackage"


@pytest.mark.parametrize("stage", STAGES + ("tools",))
def test_no_folder_holds_more_than_about_twenty_modules(stage):
    crowded = {}
    for folder in [REPO_ROOT / stage, *(REPO_ROOT / stage).rglob("*/")]:
        count = len([path for path in folder.glob("*.py") if path.name != "__init__.py"])
        if count > MAX_MODULES and folder.name != "__pycache__":
            crowded[str(folder.relative_to(REPO_ROOT))] = count
    assert not crowded, f"folders with more than {MAX_MODULES} modules (split them by concern): {crowded}"


def test_the_checks_see_a_wrong_import(tmp_path):
    """The parser above finds lazy and relative imports (the checks could not fail otherwise)."""
    module = tmp_path / "inference" / "pipeline" / "x.py"
    module.parent.mkdir(parents=True)
    module.write_text("def f():\n    from inference import predict\n    from ..serving import verdict\n")
    found = imported(module, "inference.pipeline.x")
    assert {"inference.predict", "inference.serving.verdict"} <= found
