"""The house's layout rules (docs/architecture.md) and the import graph they are checked on.

tests/test_layout.py checks the rules, tools/draw_architecture.py draws the graph: both read them
here. The graph is read with `ast`, nothing imported, so it costs milliseconds. A module depends on
another when it

- imports it (`import x`, `from x import y`, relative imports), anywhere in the file: an import
  inside a function counts too (a lazy import is still a dependency);
- names it to `importlib.import_module("x")` as a string literal;
- runs it as a command in a subprocess, `[sys.executable, "-m", "x", ...]`: a list or tuple literal
  in which the string "-m" is followed by the string "x".

Only string literals are seen: a module name computed at run time (`import_module(name)`, `"-m",
module`) is not, nor a `python -m x` written inside one longer string (help texts and messages say
those to people).
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

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
# inference.benchmarks times the commands as people run them (`python -m inference.predict` in a
# subprocess, the process's start and imports included): the one subpackage that may run a command.
# Running it is no import of it; nothing imports a command.
COMMAND_RUNNER = "inference.benchmarks"
MAX_MODULES = 20
# A command parses its options, calls its work in a subpackage and reports: a few lines.
MAX_COMMAND_LINES = 30


def modules(stage: str, root: Path = REPO_ROOT) -> dict[str, Path]:
    """Each module of a stage by its dotted name."""
    return {
        ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__"): path
        for path in sorted((root / stage).rglob("*.py"))
    }


def _string(node: ast.AST) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _is_import_module(call: ast.Call) -> bool:
    function = call.func
    name = function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", None)
    return name == "import_module"


def references(path: Path, name: str) -> set[tuple[str, str]]:
    """(dotted name, how) for every module or package `path` depends on, anywhere in it; how is
    "import" (a statement or importlib.import_module) or "run" (`"-m", "x"` in a list or tuple).
    Names outside the project's stages are left out."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[tuple[str, str]] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update((alias.name, "import") for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            found.add((base, "import"))
            # `from inference import predict` imports the module inference.predict
            found.update((f"{base}.{alias.name}", "import") for alias in node.names)
        elif isinstance(node, ast.Call) and _is_import_module(node) and node.args:
            target = _string(node.args[0])
            if target and not target.startswith("."):
                found.add((target, "import"))
        elif isinstance(node, (ast.List, ast.Tuple)):
            items = [_string(item) for item in node.elts]
            found.update(
                (target, "run") for flag, target in zip(items, items[1:], strict=False) if flag == "-m" and target
            )
    return {(dotted, how) for dotted, how in found if dotted.split(".")[0] in STAGES}


def imported(path: Path, name: str) -> set[str]:
    """The project modules (or packages) `path` depends on, anywhere in it, as dotted names: those it
    imports, names to importlib.import_module, or runs with `-m` (see the module's docstring)."""
    return {dotted for dotted, _ in references(path, name)}


def is_command(name: str) -> bool:
    parts = name.split(".")
    return len(parts) == 2 and parts[0] == "inference" and parts[1] in COMMANDS


def allowed_run(importer: str, target: str, how: str) -> bool:
    """COMMAND_RUNNER's runs of a command (see COMMAND_RUNNER)."""
    return how == "run" and is_command(target) and importer.startswith(f"{COMMAND_RUNNER}.")


def all_imports(root: Path = REPO_ROOT) -> dict[str, set[str]]:
    """What each module of the stages depends on (imported()), less COMMAND_RUNNER's runs of the
    commands (a command it also imported would stay)."""
    graph = {}
    for stage in STAGES:
        for name, path in modules(stage, root).items():
            # a target both run and imported stays: the import's tuple is kept
            graph[name] = {target for target, how in references(path, name) if not allowed_run(name, target, how)}
    return graph
