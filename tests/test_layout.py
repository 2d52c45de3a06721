"""The house's layout (docs/architecture.md): imports go down only, and every folder stays small.

The rules and the import graph are tools/layout_rules.py's (tools/draw_architecture.py draws the
same graph): read with `ast`, nothing imported. Every import counts, those inside functions too,
and so do `importlib.import_module("x")` and `[sys.executable, "-m", "x"]` with x a string literal.

- common imports none of preprocess, training or inference; preprocess imports neither training
  nor inference; training does not import inference.
- Inside inference, the commands (the modules at its top, `python -m inference.X`) are short and
  imported by nothing in inference (only inference.benchmarks may run one, to time it), and a
  subpackage imports only subpackages below it in INFERENCE_ORDER.
- Inside training and preprocess likewise: a subpackage imports only those below it in
  TRAINING_ORDER / PREPROCESS_ORDER, and the modules at the stage's top (training's commands;
  preprocess' steps and what they share) sit above them all.
- No folder holds more than MAX_MODULES modules.
"""

from __future__ import annotations

import pytest

from tests.conftest import REPO_ROOT
from tools.layout_rules import (
    COMMAND_RUNNER,
    COMMANDS,
    INFERENCE_ORDER,
    MAX_COMMAND_LINES,
    MAX_MODULES,
    ORDERS,
    STAGES,
    TRAINING_COMMANDS,
    all_imports,
    imported,
    references,
)

# tests/ is not checked: one file per concern of the code, read by pytest, and several people add
# to it at once.


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


def order_problems(graph: dict[str, set[str]], stage: str) -> list[str]:
    """Each import of `graph` that goes up `stage`'s order of subpackages (or, in inference, to a command)."""
    wrong = []
    for name, targets in graph.items():
        here = level(name)
        if here is None or name.split(".")[0] != stage:
            continue
        for target in targets:
            there = level(target)
            if there is None or target not in graph or target.split(".")[0] != stage:
                continue  # a name imported from a package (`from inference.models import ensemble`)
            if there[0] > here[0] or (stage == "inference" and there[1] == "top"):
                wrong.append(f"{name} ({here[1]}) imports {target} ({there[1]})")
    return sorted(wrong)


@pytest.mark.parametrize("stage", sorted(ORDERS))
def test_imports_go_down_a_stages_subpackages(stage):
    wrong = order_problems(all_imports(), stage)
    top = "commands, and no module imports a command" if stage == "inference" else "the modules at its top"
    assert not wrong, f"{stage}'s order is {' < '.join(ORDERS[stage])} < {top}:\n" + "\n".join(wrong)


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
    """The parser above finds lazy and relative imports, modules named to importlib and modules run
    with -m (the checks could not fail otherwise)."""
    module = tmp_path / "inference" / "pipeline" / "x.py"
    module.parent.mkdir(parents=True)
    module.write_text(
        "import importlib, subprocess, sys\n"
        "def f():\n    from inference import predict\n    from ..serving import verdict\n"
        "    importlib.import_module('inference.evaluation.robustness')\n"
        "    subprocess.run([sys.executable, '-m', 'inference.detect', '--help'])\n"
        "    importlib.import_module(f'inference.{verdict}')  # computed: not seen\n"
        "    print('python -m inference.score')  # words for people: not a run\n"
    )
    found = imported(module, "inference.pipeline.x")
    assert found == {
        "inference",
        "inference.predict",
        "inference.serving",
        "inference.serving.verdict",
        "inference.evaluation.robustness",
        "inference.detect",
    }


def test_a_command_run_with_dash_m_counts_as_an_import_but_where_it_is_timed(tmp_path):
    """A subprocess `-m inference.detect` is a dependency like an import: from the pipeline it goes up
    the order; only inference.benchmarks, which times the commands as people run them, may run one."""
    files = {
        "inference/__init__.py": "",
        "inference/detect.py": "",
        "inference/pipeline/__init__.py": "",
        "inference/pipeline/x.py": "import sys\nCOMMAND = [sys.executable, '-m', 'inference.detect']\n",
        "inference/benchmarks/__init__.py": "",
        "inference/benchmarks/y.py": "RUNS = {'exact': ['-m', 'inference.detect', '--fast']}\n",
        "inference/benchmarks/z.py": "import importlib\nimportlib.import_module('inference.detect')\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert references(tmp_path / "inference/benchmarks/y.py", "inference.benchmarks.y") == {("inference.detect", "run")}
    assert order_problems(all_imports(tmp_path), "inference") == [
        "inference.benchmarks.z (benchmarks) imports inference.detect (top)",
        "inference.pipeline.x (pipeline) imports inference.detect (top)",
    ]


def test_the_benchmarks_runs_of_the_commands_are_seen():
    """The real runs the exception is for: inference.benchmarks times predict and detect in subprocesses."""
    bench = REPO_ROOT / "inference" / "benchmarks"
    assert COMMAND_RUNNER == "inference.benchmarks"
    assert {"inference.predict", "inference.benchmarks.original_baseline"} <= imported(
        bench / "command_bench.py", "inference.benchmarks.command_bench"
    )
    assert {"inference.predict", "inference.detect"} <= imported(
        bench / "hostile_bench.py", "inference.benchmarks.hostile_bench"
    )
    assert "inference.benchmarks.original_baseline" in all_imports()["inference.benchmarks.command_bench"]
