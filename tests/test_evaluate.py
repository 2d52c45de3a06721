"""inference.evaluate: a protocol of models and test sets -> one cross-dataset table."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml

from inference.detectors.options import DETECTORS
from inference.evaluation.protocols import ProtocolError, expand, main, read_protocol
from inference.scoring.submission_scoring import evaluate, read_labels, read_submission
from tests.conftest import REPO_ROOT, save_tiny_checkpoint
from tests.training_data import make_crop_dataset

# two models' predictions over the same videos in two layouts: each frame through MTCNN once
# (tests/detection_memo.py)
pytest_plugins = ("tests.detection_memo",)  # its `remembered_detections` fixture
pytestmark = pytest.mark.usefixtures("remembered_detections")


@pytest.fixture(scope="module")
def protocol_run(demo_world, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("evaluate")
    folders = tmp / "folders_set"
    labels = read_labels(demo_world / "test_videos" / "labels.csv")
    for name, (label, _) in labels.items():
        link = folders / ("fake" if label else "real") / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(demo_world / "test_videos" / name)
    bright_file = tmp / "bright.bin"
    bright_file.write_bytes(b"a file in its authors' format")
    crops = tmp / "crops"
    make_crop_dataset(crops, groups=4, fakes_per_group=1, crops=4, size=40)
    tiny = {
        "config": str(REPO_ROOT / "configs" / "demo.yaml"),
        "data_dir": str(crops),
        "fold": 0,
        "seed": 3,
        "set": [
            *("training.epochs=1", "training.batches_per_epoch=2", "data.batch_size=4", "data.num_workers=0"),
            *("model.input_size=32", "data.fakes=blends", "data.min_class_crops=4"),  # 8 crops a class
        ],
    }
    protocol = {
        "models": [
            {"name": "random", "checkpoints": [str(save_tiny_checkpoint(tmp / "random.pt", seed=1))]},
            {"name": "sbi_tiny", "train": tiny},
            # another paper's detector beside them (here tests/test_detector_interface.py's, by name)
            {"name": "bright", "checkpoints": [str(bright_file)], "detector": "brightness"},
        ],
        "test_sets": [
            {"name": "demo_test", "root": "${DEMO_ROOT}/test_videos", "labels": "labels.csv"},
            {"name": "by_folder", "root": str(folders), "layout": "folders"},
        ],
        # PyTorch's runtime: the table is tested here, not OpenVINO's export (test_runtime.py)
        "predict": {"frames": 8, "detector_scale": "rule", "workers": 0, "runtime": "torch"},
    }
    path = tmp / "protocol.yaml"
    path.write_text(yaml.safe_dump(protocol))
    out = tmp / "out"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DEMO_ROOT", str(demo_world))
        patch.setitem(DETECTORS, "brightness", "tests.test_detector_options")
        assert main(["--protocol", str(path), "--out", str(out)]) == 0
    return path, out, labels


def test_the_table_holds_every_model_set_and_method(protocol_run):
    _, out, labels = protocol_run
    with open(out / "table.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    methods = sorted({group for label, group in labels.values() if label})
    # a folders layout names no method: its fakes are the "fake" method
    expected = {("random", "demo_test", m) for m in ["all", *methods]} | {
        ("random", "by_folder", m) for m in ["all", "fake"]
    }
    expected |= {(s, t, m) for (_, t, m) in expected for s in ["sbi_tiny", "bright"]}
    assert {(r["model"], r["test_set"], r["method"]) for r in rows} == expected
    table = (out / "table.md").read_text()
    header = "| video AUC | frame AUC | log loss | EER | AP | ECE | Brier | TPR@5%FPR | TPR@1%FPR | reals | videos |"
    assert header in table and table.count("\n") == len(rows) + 2
    assert "TPR@0.1%FPR" not in table and "tpr_at_0.1pct_fpr" not in rows[0]  # no row has the 999 reals
    # the demo's few reals cannot support a 5% rate (19 needed): '-' in the table, empty in the csv
    assert all(r["tpr_at_5pct_fpr"] == "" and r["tpr_at_1pct_fpr"] == "" for r in rows)
    assert all(line.split(" | ")[-4:-2] == ["-", "-"] for line in table.splitlines()[2:])
    assert (out / "roc_demo_test.png").stat().st_size > 0 and (out / "roc_by_folder.png").stat().st_size > 0
    assert (out / "weights" / "sbi_tiny_0_3_best.pt").is_file()


def test_the_numbers_are_those_of_the_submission_and_its_faces(protocol_run):
    _, out, labels = protocol_run
    results = json.loads((out / "results.json").read_text())
    prediction_dir = out / "predictions" / "random" / "demo_test"
    submission = read_submission(prediction_dir / "submission.csv")
    overall = evaluate(submission, labels)["overall"]
    row = results["random"]["demo_test"]["all"]
    assert row["video_auc"] == pytest.approx(overall["roc_auc"]) and row["log_loss"] == pytest.approx(
        overall["log_loss"]
    )
    assert row["videos"] == len(labels)
    assert row["ece"] == pytest.approx(overall["ece"]) and row["brier"] == pytest.approx(overall["brier"])
    real_videos = sum(1 for label, _ in labels.values() if label == 0)
    assert row["reals"] == real_videos and row["tpr_at_5pct_fpr"] is None
    assert row["tpr_at_fpr"]["0.05"] == {**overall["tpr_at_fpr"]["0.05"], "reals": real_videos, "reals_needed": 19}
    y, p = [], []
    for line in (prediction_dir / "details.jsonl").read_text().splitlines():
        detail = json.loads(line)
        y += [labels[detail["filename"]][0]] * len(detail["face_scores"])
        p += detail["face_scores"]
    from sklearn.metrics import roc_auc_score

    assert row["frame_auc"] == pytest.approx(roc_auc_score(np.array(y), np.array(p)))
    # the same videos under real/ and fake/ folders score the same
    assert results["random"]["by_folder"]["all"]["video_auc"] == pytest.approx(row["video_auc"])
    # the other detector's row is its own scores: each video its brightest face (Brightness)
    bright = read_submission(out / "predictions" / "bright" / "demo_test" / "submission.csv")
    assert results["bright"]["demo_test"]["all"]["log_loss"] == pytest.approx(
        evaluate(bright, labels)["overall"]["log_loss"]
    )
    assert bright != submission


def test_a_second_run_reuses_predictions_and_runs(protocol_run, demo_world, monkeypatch):
    path, out, _ = protocol_run
    submission = out / "predictions" / "sbi_tiny" / "demo_test" / "submission.csv"
    best = out / "weights" / "sbi_tiny_0_3_best.pt"
    before = (submission.stat().st_mtime_ns, best.stat().st_mtime_ns)
    monkeypatch.setenv("DEMO_ROOT", str(demo_world))
    monkeypatch.setitem(DETECTORS, "brightness", "tests.test_detector_options")
    import inference.prediction.predict_folder
    import training.train

    def refuse(*args, **kwargs):
        raise AssertionError("nothing should be predicted or trained again")

    monkeypatch.setattr(inference.prediction.predict_folder, "main", refuse)
    monkeypatch.setattr(training.train, "train", refuse)
    assert main(["--protocol", str(path), "--out", str(out)]) == 0
    assert (submission.stat().st_mtime_ns, best.stat().st_mtime_ns) == before
    # a checkpoint that changed since (retrained, replaced) is predicted with again
    checkpoint = Path(read_protocol(path)["models"][0]["checkpoints"][0])
    stat = checkpoint.stat()
    os.utime(checkpoint, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    with pytest.raises(AssertionError, match="nothing should be predicted"):
        main(["--protocol", str(path), "--out", str(out)])


def test_protocol_errors_name_the_problem(tmp_path, monkeypatch):
    path = tmp_path / "p.yaml"
    path.write_text(
        yaml.safe_dump({"models": [{"name": "a", "checkpoints": ["x"], "train": {}}], "test_sets": [{"name": "t"}]})
    )
    with pytest.raises(ProtocolError, match="give one of `checkpoints:`, `train:` or `ensemble:`"):
        read_protocol(path)
    path.write_text(yaml.safe_dump({"models": [{"checkpoints": ["x"]}], "test_sets": [{"name": "t"}]}))
    with pytest.raises(ProtocolError, match="needs a name of its own"):
        read_protocol(path)
    path.write_text(yaml.safe_dump({"models": [{"name": "a", "train": {"config": "c"}}], "test_sets": [{"name": "t"}]}))
    with pytest.raises(ProtocolError, match="`train:` needs data_dir"):
        read_protocol(path)
    path.write_text(yaml.safe_dump({"models": [{"name": "a", "checkpoints": ["x"]}], "test_sets": [{"name": "t"}]}))
    with pytest.raises(ProtocolError, match="test set t needs a `root:` folder"):
        read_protocol(path)
    path.write_text(yaml.safe_dump({"models": []}))
    with pytest.raises(ProtocolError, match="non-empty `models:`"):
        read_protocol(path)
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    assert expand("${NOT_SET_ANYWHERE:-work}/data") == "work/data"
    with pytest.raises(ProtocolError, match=r"\$\{NOT_SET_ANYWHERE\} is not set"):
        expand("${NOT_SET_ANYWHERE}/data")
    for protocol in (REPO_ROOT / "configs" / "protocols").glob("*.yaml"):
        assert read_protocol(protocol)["test_sets"]
