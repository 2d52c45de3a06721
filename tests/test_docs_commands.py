"""The docs cannot rot: every `python -m MODULE ...` command that README.md and docs/*.md name answers
--help, and every --flag on that command's line is in that help; every script they name exists; every
relative link, image and anchor resolves.

Each module's help is taken in-process (its `main(["--help"])`, standard output captured), so the
whole file costs the modules' imports once, not a Python start per command."""

from __future__ import annotations

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
