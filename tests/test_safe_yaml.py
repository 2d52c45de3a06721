"""YAML from users is read with a cap on its size once its aliases are expanded: a "billion laughs"
file (1.2 KB, nine levels of nine aliases each, about 8 GB and a MemoryError traceback once
expanded) is one line naming the file, from every reader of a file or option a user gives; small
aliases (PyYAML's safe_dump writes them) still load, and what the project writes holds none."""

from __future__ import annotations

import time

import pytest
import yaml

from common.cli import InputError


def billion_laughs(levels: int = 9) -> str:
    """`levels` lists of nine aliases of the level below: 9**levels strings once expanded."""
    lines = ["laughs:", '  - &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, levels):
        aliases = ", ".join([f"*l{level - 1}"] * 9)
        lines.append(f"  - &l{level} [{aliases}]")
    return "\n".join(lines) + "\n"


def inline_laughs(levels: int = 9) -> str:
    """`billion_laughs` on one line, as an option's value."""
    lists = ["&l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lists += [f"&l{level} [{', '.join([f'*l{level - 1}'] * 9)}]" for level in range(1, levels)]
    return f"[{', '.join(lists)}]"


def test_a_billion_laughs_is_refused_before_it_is_expanded():
    from common.safe_yaml import safe_load

    text = billion_laughs()  # half a KB here; 387 million strings expanded
    started = time.perf_counter()
    with pytest.raises(yaml.YAMLError, match=r"^the YAML document would hold more than 1,000,000 values once its"):
        safe_load(text)
    with pytest.raises(yaml.YAMLError, match=r"^the YAML document would hold more than 1,000,000 values once its"):
        safe_load(inline_laughs())
    assert time.perf_counter() - started < 1
    assert safe_load(billion_laughs(levels=5))["laughs"][4][8][8][8][8][8] == "lol", "66 thousand values load"


def test_small_aliases_load_as_pyyaml_reads_them(monkeypatch):
    from common.safe_yaml import safe_load

    shared = {"checkpoint": "a.pt", "weight": 1.0}
    text = yaml.safe_dump({"members": [shared], "calibration": {"members": [shared]}})
    assert "&id001" in text, "PyYAML's safe_dump writes an alias for an object met twice"
    assert safe_load(text) == {"members": [shared], "calibration": {"members": [shared]}}
    merged = safe_load("base: &base {a: 1}\nderived:\n  <<: *base\n  b: 2\n")
    assert merged["derived"] == {"a": 1, "b": 2}
    monkeypatch.setattr("common.safe_yaml.MAX_NODES", 12)  # the cap counts every alias as what it repeats
    with pytest.raises(yaml.YAMLError, match="more than 12 values"):
        safe_load("a: &x [1, 2, 3]\nb: [*x, *x]\n")
    assert safe_load("a: &x [1, 2, 3]\nb: *x\n") == {"a": [1, 2, 3], "b": [1, 2, 3]}


def test_an_alias_inside_the_node_it_names_is_refused():
    from common.safe_yaml import safe_load

    with pytest.raises(yaml.YAMLError, match=r"^the YAML alias \*loop at line 1 is inside the node it names"):
        safe_load("a: &loop [1, *loop]\n")


def test_a_document_nested_too_deeply_is_a_yaml_error_not_a_recursion_error():
    from common.safe_yaml import safe_load

    with pytest.raises(yaml.YAMLError, match="nested too deeply"):
        safe_load("[" * 100_000)


def test_what_is_written_never_holds_an_alias_and_loads_again():
    from common.safe_yaml import safe_dump, safe_load

    shared = {"detector_scale": 0.5, "frames": [1, 2]}
    document = {"settings": shared, "held_out": {"settings": shared}}
    text = safe_dump(document, sort_keys=False)
    assert "&" not in text and "*" not in text
    assert safe_load(text) == document


# What each reader is given: a document to put first and a value to use in the reader's own settings.
LAUGHS = (billion_laughs(), "*l8")
LONG_INTEGER = ("", "9" * 5000)  # "error: Exceeds the limit (4300 digits)...", naming neither file nor option


def _ensemble_file(folder, prefix, value):
    from inference.models.ensemble_file import read_ensemble_file

    path = folder / "ensemble.yaml"
    path.write_text(prefix + f"members:\n  - {{checkpoint: a.pt, extra: {value}}}\n")
    return path, lambda: read_ensemble_file(path)


def _training_config(folder, prefix, value):
    from training.settings.config import load_config

    path = folder / "config.yaml"
    path.write_text(prefix + f"model:\n  encoder_args: {{depth: {value}}}\n")
    return path, lambda: load_config(path)


def _preprocessing_config(folder, prefix, value):
    from preprocess.steps import load_config

    path = folder / "preprocess.yaml"
    path.write_text(prefix + f"extra: {value}\n")
    return path, lambda: load_config(path)


def _protocol(folder, prefix, value):
    from inference.evaluation.protocols import read_protocol

    path = folder / "protocol.yaml"
    path.write_text(prefix + f"extra: {value}\n")
    return path, lambda: read_protocol(path)


def _run_config(folder, prefix, value):
    from inference.fitting.ensemble_fit import run_members

    run = folder / "logs" / "run_0_111"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(prefix + f"model: {{encoder: resnet18, input_size: {value}}}\n")
    return run / "config.yaml", lambda: run_members([run], [1.0], folder / "ensemble.yaml")


def _inline(prefix, value):
    return inline_laughs() if value == "*l8" else value


def _set_option(folder, prefix, value):
    from training.settings.config import DEFAULTS, apply_overrides

    assignment = f"model.encoder_args={_inline(prefix, value)}"
    return "--set model.encoder_args", lambda: apply_overrides(DEFAULTS, [assignment])


def _predict_option(folder, prefix, value):
    from inference.evaluation.evaluate_dataset import predict_options

    option = f"frames={_inline(prefix, value)}"
    return f"--predict {option[:40]}", lambda: predict_options([option])


READERS = {
    "ensemble file": _ensemble_file,
    "training config": _training_config,
    "preprocessing config": _preprocessing_config,
    "evaluation protocol": _protocol,
    "a run's config.yaml (fit_ensemble)": _run_config,
    "training --set": _set_option,
    "evaluate --predict": _predict_option,
}


def _refusal(reader: str, folder, hostile: tuple[str, str]) -> str:
    """The first line of the error `reader` gives for `hostile`, checked to name what it read."""
    name, read = READERS[reader](folder, *hostile)
    with pytest.raises((InputError, ValueError)) as error:
        read()
    assert str(error.value).startswith(str(name)), str(error.value)[:300]
    return str(error.value).splitlines()[0]


@pytest.mark.parametrize("reader", sorted(READERS))
def test_every_reader_of_user_yaml_refuses_a_billion_laughs_naming_what_it_read(reader, tmp_path):
    assert "more than 1,000,000 values once its aliases are expanded" in _refusal(reader, tmp_path, LAUGHS)


@pytest.mark.parametrize("reader", sorted(READERS))
def test_every_reader_refuses_an_integer_python_cannot_read_naming_what_it_read(reader, tmp_path):
    line = _refusal(reader, tmp_path, LONG_INTEGER)
    assert "the integer at line " in line and "has more than 4300 digits" in line, line[:300]


@pytest.mark.parametrize("reader", ["ensemble file", "training config", "evaluation protocol"])
def test_a_file_over_the_size_cap_is_refused_before_it_is_parsed(reader, tmp_path, monkeypatch):
    """A 100 MB file parsed for minutes before the count of its values refused it."""
    monkeypatch.setattr("common.safe_yaml.MAX_CHARACTERS", 2000)
    started = time.perf_counter()
    line = _refusal(reader, tmp_path, ("padding: " + "x" * 3000 + "\n", "1"))
    assert "more than 2,000 characters long" in line, line
    assert time.perf_counter() - started < 1


def test_a_big_document_without_aliases_is_refused_without_mentioning_aliases(monkeypatch):
    """A 3.7 MB file of 200,000 keys (no alias) took 25 s to be refused "once its aliases are
    expanded"; it is refused as soon as the count passes the cap, in words that fit it."""
    from common.safe_yaml import safe_load

    monkeypatch.setattr("common.safe_yaml.MAX_NODES", 1000)
    text = "big:\n" + "".join(f"  k{index}: [1, 2, 3]\n" for index in range(400))
    with pytest.raises(yaml.YAMLError) as error:
        safe_load(text)
    # five values a key: refused at its 200th key (line 201), not once the mapping is closed (line 401)
    assert str(error.value) == "the YAML document would hold more than 1,000 values (at line 201)"
