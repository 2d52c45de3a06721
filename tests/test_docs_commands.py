"""The docs cannot rot: every `python -m MODULE ...` command that README.md and docs/*.md name answers
--help, and every --flag on that command's line is in that help; every script they name exists; every
relative link, image and anchor resolves; every project module they name as a dotted name
(`inference.calibration.simulation`, or a module's function or class such as
`inference.detectors.options.load_detectors`), in code or in plain text, exists, and so does every
repository path they name (`inference/pipeline/detector.py`, `configs/b7.yaml`, `inference/detectors/`).

Which paths are the repository's: those that start with a folder holding its code, tests, configs or
docs (REPOSITORY_FOLDERS), not after another path's `/` or `.`. Output paths start elsewhere, with
the folder a command was given (`work/...`, `ROOT/...`, `OUTPUT_DIR/...`, `$OUT/...`) or `weights/`
(what inference.weights downloads; not in git), and are not checked; nor is a path that a command of
the docs writes (`--out configs/ensemble.yaml`, `--output PATH`), wherever the docs name it. A
dotted name that is a setting of the training config (`training.amp`, as `--set` takes it) is
checked against the config's defaults instead.

Each module's help is taken in-process (its `main(["--help"])`, standard output captured), so the
whole file costs the modules' imports once, not a Python start per command."""

from __future__ import annotations

import ast
import contextlib
import functools
import importlib
import importlib.util
import io
import re
from collections import defaultdict
from pathlib import Path
from typing import NamedTuple

import pytest

from tests.conftest import REPO_ROOT

DOCS = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
INLINE = re.compile(r"`([^`]+)`")
# `-m MODULE` as python and torchrun take it; a placeholder such as `preprocess.<step>` is no module.
MODULE = re.compile(r"(?<![\w-])-m\s+([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)(?![\w.<])")
FLAG = re.compile(r"(?<![\w-])--[A-Za-z][\w-]*")
SCRIPT = re.compile(r"(?<![\w/.-])(\./[\w-]+\.sh|tools/[\w-]+\.(?:sh|py))\b")
LINK = re.compile(r"\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*$", re.M)
# The project's packages (and tools/, tests/) as the start of a dotted name, not inside a path or a longer name.
PACKAGES = ("common", "preprocess", "training", "inference", "tests", "tools")
DOTTED = re.compile(rf"(?<![\w/.$-])((?:{'|'.join(PACKAGES)})(?:\.[A-Za-z_]\w*)+)")
# `training.md`, `preprocess.yaml`: file names, not modules
FILE_SUFFIXES = {"py", "yaml", "yml", "md", "json", "jsonl", "csv", "txt", "png", "sh", "log", "pt", "html"}
REPOSITORY_FOLDERS = (*PACKAGES, "configs", "docs")
WRITTEN = re.compile(r"--out(?:put)?[ =]+(\S+)")
REPOSITORY_PATH = re.compile(rf"(?<![\w/.$~-])((?:{'|'.join(REPOSITORY_FOLDERS)})/[\w./<>{{}}*-]*)")


class Command(NamedTuple):
    module: str
    flags: tuple[str, ...]
    line: str


def code_spans(text: str) -> list[str]:
    """Each command line of the fenced blocks (continuations joined, shell comments dropped) and each
    inline code span, whitespace collapsed."""
    spans = []
    for block in FENCE.findall(text):
        for line in block.replace("\\\n", " ").splitlines():
            spans.append(re.sub(r"(^|\s)#.*", "", line))
    spans += INLINE.findall(FENCE.sub("", text))
    return [" ".join(span.split()) for span in spans if span.strip()]


def module_commands(text: str) -> list[Command]:
    """The commands of this project's modules (a top-level name that is a folder or file of the
    repository: not pip, venv or pytest), each with the flags that follow it on its line."""
    commands = []
    for span in code_spans(text):
        for part in re.split(r"&&|;", span):
            for match in MODULE.finditer(part):
                module = match.group(1)
                top = module.split(".")[0]
                if (REPO_ROOT / top).is_dir() or (REPO_ROOT / f"{top}.py").is_file():
                    tail = MODULE.split(part[match.end() :])[0]
                    commands.append(Command(module, tuple(FLAG.findall(tail)), part))
    return commands


def scripts(text: str) -> set[str]:
    return {found for span in code_spans(text) for found in SCRIPT.findall(span)}


def dotted_names(text: str) -> set[str]:
    """The project modules (or their attributes) that a page names as dotted names, anywhere in it."""
    return {name for name in DOTTED.findall(text) if name.rpartition(".")[2] not in FILE_SUFFIXES}


def written_paths(text: str) -> set[str]:
    """The paths the commands of a page write (`--out PATH`, `--output PATH`)."""
    return {found for span in code_spans(text) for found in WRITTEN.findall(span)}


WRITTEN_BY_THE_DOCS = set().union(*(written_paths(page.read_text()) for page in DOCS))


def repository_paths(text: str) -> set[str]:
    """The repository paths that a page names (see the module's docstring for which those are)."""
    return {path.rstrip(".,:;") for path in REPOSITORY_PATH.findall(text) if path.rstrip(".,:;")}


@functools.cache
def _defined_names(path: Path) -> frozenset[str]:
    """The names a module defines or imports at its top level."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(target.id for target in targets if isinstance(target, ast.Name))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
    return frozenset(names)


def _module_file(parts: list[str], root: Path) -> Path | None:
    path = root.joinpath(*parts)
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    return path if path.is_dir() else None  # a folder without __init__.py (tools/) is a namespace package


def _settings(mapping: dict, prefix: str = "") -> set[str]:
    names = set()
    for key, value in mapping.items():
        names.add(f"{prefix}{key}")
        if isinstance(value, dict):
            names |= _settings(value, f"{prefix}{key}.")
    return names


@functools.cache
def training_settings() -> frozenset[str]:
    """Every setting of the training config as `--set` names it (`training.amp`, `model.input_size`)."""
    from training.settings.config import DEFAULTS

    return frozenset(_settings(DEFAULTS))


def resolves(dotted: str, root: Path = REPO_ROOT) -> bool:
    """Whether `dotted` is a module or package of the repository, or a name one of them defines (read
    with ast, nothing imported), or a setting of the training config."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        found = _module_file(parts[:cut], root)
        if found is None:
            continue
        rest = parts[cut:]
        if not rest:
            return True
        return len(rest) == 1 and found.suffix == ".py" and rest[0] in _defined_names(found)
    return False


def name_problems(page: Path, text: str, root: Path = REPO_ROOT, written=WRITTEN_BY_THE_DOCS) -> list[str]:
    """Each dotted name and repository path of `text` that names nothing in the repository at `root`
    (the paths in `written`, outputs of the docs' commands, left out)."""
    problems = [
        f"{page.name}: {name}: no such module"
        for name in sorted(dotted_names(text))
        if not resolves(name, root) and name not in training_settings()
    ]
    for path in sorted(repository_paths(text) - set(written)):
        if "*" in path:
            missing = not list(root.glob(path))
        else:
            # a placeholder (`configs/<model>.yaml`, `ROOT/{video}`): the folder before it must exist
            fixed = re.split(r"[<{]", path)[0].rpartition("/")[0] if re.search(r"[<{]", path) else path
            missing = not (root / fixed).exists()
        if missing:
            problems.append(f"{page.name}: {path}: no such file or folder in the repository")
    return problems


@functools.cache
def help_text(module: str) -> str | None:
    """The module's --help, as `python -m MODULE --help` prints it; None where there is no such module."""
    if importlib.util.find_spec(module) is None:
        return None
    main = importlib.import_module(module).main
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code in (0, None), f"{module} --help exited with {exit_.value.code}"
    return printed.getvalue()


def command_problems(commands: list[Command], help_of=help_text) -> list[str]:
    problems = []
    for command in commands:
        text = help_of(command.module)
        if text is None:
            problems.append(f"{command.module}: no such module ({command.line})")
            continue
        for flag in command.flags:
            if not re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text):
                problems.append(f"{command.module}: {flag} is not in its --help ({command.line})")
    return problems


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation but - and _ dropped, spaces to -."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def link_problems(page: Path, text: str) -> list[str]:
    problems = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            problems.append(f"{page.name}: {target}: no such file")
        elif anchor and anchor not in {slug(h) for h in HEADING.findall(FENCE.sub("", linked.read_text()))}:
            problems.append(f"{page.name}: {target}: no such heading in {linked.name}")
    return problems


def _commands_by_module() -> dict[str, list[Command]]:
    by_module = defaultdict(list)
    for page in DOCS:
        for command in module_commands(page.read_text()):
            by_module[command.module].append(command)
    return dict(by_module)


COMMANDS = _commands_by_module()


def test_the_docs_name_the_commands_people_run():
    assert {"inference.detect", "inference.predict", "training.train", "preprocess.run_all"} <= set(COMMANDS)


@pytest.mark.parametrize("module", sorted(COMMANDS))
def test_each_command_answers_help_with_every_flag_the_docs_give_it(module):
    assert command_problems(COMMANDS[module]) == []


def test_every_script_the_docs_name_exists():
    named = set().union(*(scripts(page.read_text()) for page in DOCS))
    assert {"./run_all.sh", "./run_tests.sh"} <= named
    assert sorted(name for name in named if not (REPO_ROOT / name).is_file()) == []


def test_every_relative_link_and_anchor_resolves():
    assert [problem for page in DOCS for problem in link_problems(page, page.read_text())] == []


def test_every_module_and_repository_path_the_docs_name_exists():
    named = set().union(*(dotted_names(page.read_text()) for page in DOCS))
    assert {"inference.calibration.simulation", "inference.evaluation.timeliness", "training.amp"} <= named
    paths = set().union(*(repository_paths(page.read_text()) for page in DOCS))
    assert {"inference/pipeline/detector.py", "tools/draw_architecture.py", "inference/detectors/"} <= paths
    assert [problem for page in DOCS for problem in name_problems(page, page.read_text())] == []


def test_a_missing_module_attribute_or_path_is_reported_and_output_paths_are_not_checked(tmp_path):
    text = (
        "`inference.calibration.simulation` and inference.detectors.options.load_detectors hold it;\n"
        "`inference.models.no_such_module` and inference.calibration.no_such_module do not, nor\n"
        "`inference.detectors.options.no_such_function`; see inference/pipeline/detector.py, `configs/b7.yaml`,\n"
        "inference/detectors/, configs/<model>.yaml and tests/test_docs_*.py, not inference/no_such.py or\n"
        "`configs/no_such/<model>.yaml`. Outputs: work/crops/x.png, ROOT/boxes/{video}.json,\n"
        "OUTPUT_DIR/logs/, weights/b7.pt, ../shared/data/x.mp4, https://example.org/inference/x.py.\n"
        "`--set training.amp=false`, [training.md](training.md), `preprocess.<step>`.\n"
        "```\npython -m inference.calibrate --out configs/written.yaml\n```\nthen `--ensemble configs/written.yaml`\n"
    )
    assert written_paths(text) == {"configs/written.yaml"}
    assert name_problems(Path("page.md"), text, written=written_paths(text)) == [
        "page.md: inference.calibration.no_such_module: no such module",
        "page.md: inference.detectors.options.no_such_function: no such module",
        "page.md: inference.models.no_such_module: no such module",
        "page.md: configs/no_such/<model>.yaml: no such file or folder in the repository",
        "page.md: inference/no_such.py: no such file or folder in the repository",
    ]


SLOWEST_ROW = re.compile(r"^\| [\d.]+ \| (?:setup|call) \| `(tests/\w+\.py)::(\w+)[^`]*` \| (yes|no\b[^|]*) \|$", re.M)


def marked_slow(path: Path, test: str) -> bool:
    """Whether the test function (or its whole module, `pytestmark`) carries @pytest.mark.slow."""
    tree = ast.parse(path.read_text())
    marks = [
        ast.unparse(decorator)
        for node in tree.body
        if isinstance(node, ast.FunctionDef) and node.name == test
        for decorator in node.decorator_list
    ]
    marks += [
        ast.unparse(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign) and "pytestmark" in ast.unparse(node)
    ]
    return any(re.search(r"\bpytest\.mark\.slow\b", mark) for mark in marks)


def test_the_slowest_tests_are_marked_slow_as_development_md_says():
    """docs/development.md's table of the slowest tests says which are left out by -m "not slow"."""
    rows = SLOWEST_ROW.findall((REPO_ROOT / "docs" / "development.md").read_text())
    assert len(rows) >= 20 and sum(marked == "yes" for *_, marked in rows) >= 15, rows
    wrong = [
        f"{file}::{test}: the table says {marked!r}"
        for file, test, marked in rows
        if marked_slow(REPO_ROOT / file, test) != (marked == "yes")
    ]
    assert wrong == []


def test_a_flag_not_in_the_help_a_missing_module_script_and_anchor_are_each_reported(tmp_path):
    text = (
        "```bash\n"
        "python -m inference.predict --test-dir DIR --no-such-flag \\\n"
        "    --output out.csv   # --commented-out is no flag of the command\n"
        "python -m inference.no_such_module --help\n"
        "python3 -m pip install --no-index   # not this project's\n"
        "```\n"
        "Also `torchrun --nproc_per_node=2 -m training.train --config C --no-such-option` and "
        "`./no_such_script.sh`, [a page](no_such_page.md), [a section](#no-such-section).\n\n"
        "## A real section\n"
    )
    problems = command_problems(module_commands(text))
    assert len(problems) == 3, problems
    assert "--no-such-flag is not in its --help" in problems[0]
    assert problems[1].startswith("inference.no_such_module: no such module")
    assert "training.train: --no-such-option is not in its --help" in problems[2]
    assert scripts(text) == {"./no_such_script.sh"} and not (REPO_ROOT / "no_such_script.sh").exists()
    page = tmp_path / "page.md"
    page.write_text(text)
    assert link_problems(page, text) == [
        "page.md: no_such_page.md: no such file",
        "page.md: #no-such-section: no such heading in page.md",
    ]
    assert link_problems(page, "[here](#a-real-section)") == []
