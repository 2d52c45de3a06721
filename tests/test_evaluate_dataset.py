"""inference.evaluate --dataset DIR --models CKPT: a dataset's official test split scored without a
protocol file, in the table a protocol gives."""

from __future__ import annotations

import csv

import pytest

from common import cli
from inference.evaluation import protocols as evaluate
from inference.evaluation.evaluate_dataset import dataset_protocol, predict_options
from tests.conftest import save_tiny_checkpoint
from tests.layout_trees import CELEBDF_TEST, celebdf_tree

PREDICT = ["--predict", "frames=2", "--predict", "runtime=torch", "--predict", "workers=0"]


def _run(capsys, *arguments) -> tuple[int, str, str]:
    """evaluate's exit status, its one error line (empty when it succeeds) and what it printed."""
    status = cli.run(evaluate.main, [str(argument) for argument in arguments])
    printed = capsys.readouterr()
    errors = [line for line in printed.err.splitlines() if line.startswith("error:")]
    assert len(errors) == (status != 0), errors
    return status, errors[0] if errors else "", printed.out


@pytest.fixture(scope="module")
def celebdf(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("evaluate_dataset")
    return celebdf_tree(tmp / "Celeb-DF-v2", clips=True), save_tiny_checkpoint(tmp / "tiny.pt", seed=2)


def test_a_dataset_test_split_is_scored_without_a_protocol(celebdf, tmp_path, capsys):
    root, checkpoint = celebdf
    out = tmp_path / "out"
    status, _, printed = _run(
        capsys, "--dataset", root, "--split", "test", "--models", checkpoint, "--out", out, *PREDICT
    )
    assert status == 0
    with open(out / "table.csv", newline="") as handle:
        rows = {(r["model"], r["test_set"], r["method"]): r for r in csv.DictReader(handle)}
    assert set(rows) == {("tiny", "Celeb-DF-v2_test", "all"), ("tiny", "Celeb-DF-v2_test", "Celeb-synthesis")}
    everything = rows[("tiny", "Celeb-DF-v2_test", "all")]
    assert (everything["videos"], everything["reals"]) == ("4", "2")
    assert everything["video_auc"] and everything["frame_auc"]  # faces found and scored
    assert "| tiny | Celeb-DF-v2_test | all |" in (out / "table.md").read_text()
    assert "| tiny | Celeb-DF-v2_test | all |" in printed
    # the labels where the docs say they are, the videos linked under their paths in the dataset
    with open(out / "sets" / "Celeb-DF-v2_test.labels.csv", newline="") as handle:
        labels = {row["filename"]: row["label"] for row in csv.DictReader(handle)}
    assert labels == {name: "1" if name.startswith("Celeb-synthesis") else "0" for name in CELEBDF_TEST}
    submission = out / "predictions" / "tiny" / "Celeb-DF-v2_test" / "submission.csv"
    with open(submission, newline="") as handle:
        assert sorted(row["filename"] for row in csv.DictReader(handle)) == sorted(CELEBDF_TEST)
    assert (out / "sets" / "Celeb-DF-v2_test" / "YouTube-real" / "00170.mp4").resolve() == (
        root / "YouTube-real" / "00170.mp4"
    ).resolve()


def test_the_flags_make_the_protocol_a_file_would_name(tmp_path):
    root = celebdf_tree(tmp_path / "cdf")
    protocol = dataset_protocol(root, None, "configs/ensemble.yaml", split="val", predict=["frames=8", "fp32=true"])
    assert protocol["models"] == [{"name": "ensemble", "ensemble": "configs/ensemble.yaml"}]
    assert protocol["test_sets"] == [{"name": "cdf_valid", "root": str(root), "layout": "celebdf", "split": "valid"}]
    assert protocol["predict"] == {"frames": 8, "fp32": True}
    two = dataset_protocol(root, [tmp_path / "a.pt", tmp_path / "b.pt"], None, layout="celebdf")
    assert two["models"][0]["name"] == "a+b" and "predict" not in two and "split" not in two["test_sets"][0]
    (tmp_path / "dfdc_test").mkdir()
    (tmp_path / "dfdc_test" / "labels.csv").write_text("filename,label\nx.mp4,1\n")
    [test_set] = dataset_protocol(tmp_path / "dfdc_test", [tmp_path / "a.pt"], None)["test_sets"]
    assert test_set == {"name": "dfdc_test", "root": str(tmp_path / "dfdc_test"), "labels": "labels.csv"}
    with pytest.raises(evaluate.ProtocolError, match="expected KEY=VALUE"):
        predict_options(["frames"])


def test_bad_datasets_and_splits_end_in_one_line_exit_2(celebdf, tmp_path, capsys):
    root, checkpoint = celebdf
    (tmp_path / "nothing" / "clips").mkdir(parents=True)
    status, error, _ = _run(capsys, "--dataset", tmp_path / "nothing", "--models", checkpoint, "--out", tmp_path / "o")
    assert status == 2 and error.startswith(f"error: {tmp_path / 'nothing'}: layout not recognised")
    status, error, _ = _run(
        capsys, "--dataset", root, "--split", "valid", "--models", checkpoint, "--out", tmp_path / "o"
    )
    assert status == 2 and error.startswith(
        f"error: test set Celeb-DF-v2_valid: {root}: no videos in the 'valid' split (splits here: test, train"
    )
    assert not (tmp_path / "o" / "predictions").exists()  # stopped before any model ran
    status, error, _ = _run(capsys, "--dataset", root, "--models", tmp_path / "gone.pt", "--out", tmp_path / "o")
    assert status == 2 and "checkpoints not found" in error and "gone.pt" in error
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(SystemExit) as exit_info:  # predict's own line says why, and nothing follows it
        cli.run(
            evaluate.main,
            [
                "--dataset",
                str(root),
                "--split",
                "test",
                "--models",
                str(tmp_path / "garbage.pt"),
                "--out",
                str(tmp_path / "g"),
            ],
        )
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert exit_info.value.code == 2 and len(errors) == 1 and "garbage.pt" in errors[0], errors
    with pytest.raises(SystemExit) as exit_info:  # a protocol names its own models
        evaluate.main(["--protocol", "p.yaml", "--models", str(checkpoint), "--out", str(tmp_path / "o")])
    assert exit_info.value.code == 2 and "--models go with --dataset" in capsys.readouterr().err


def test_help_explains_the_dataset_form_and_where_the_labels_go(capsys):
    with pytest.raises(SystemExit):
        evaluate.main(["--help"])
    text = capsys.readouterr().out
    assert "--dataset DIR [--layout L] [--split test] --models CKPT" in text and "--ensemble NAME|YAML" in text
    assert "DIR/sets/NAME.labels.csv" in text and "test.py --weights_path" in text
