"""inference.score --labels DIR reads every dataset layout preprocessing reads, its videos named as
inference.predict names them when run on that folder, and --split keeps an official split."""

from __future__ import annotations

import csv
import json
import logging

import pytest

from common import cli
from inference.prediction import predict_folder as predict
from inference.scoring import submission_scoring as score
from tests.conftest import save_tiny_checkpoint
from tests.layout_trees import CELEBDF_TEST, CELEBDF_VIDEOS, FFPP_TEST, FFPP_VIDEOS, celebdf_tree, ffpp_tree


def _write_submission(path, names, value=lambda i: 0.1 + 0.8 * (i % 5) / 4):
    path.write_text("filename,label\n" + "".join(f"{name},{value(i):.4f}\n" for i, name in enumerate(sorted(names))))
    return path


def _score(capsys, *arguments) -> tuple[int, str]:
    """score's exit status and its one error line (empty when it succeeds)."""
    status = cli.run(score.main, [str(argument) for argument in arguments])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == (status != 0), errors
    return status, errors[0] if errors else ""


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("model") / "tiny.pt")


def _predict(root, checkpoint, submission, status: int = 0):
    """inference.predict on the dataset's folder, as a user runs it (--recursive); `status` 1 where
    every video fails (its rows are written all the same)."""
    arguments = ["--test-dir", str(root), "--recursive", "--models", str(checkpoint), "--output", str(submission)]
    assert predict.main([*arguments, "--frames", "2", "--runtime", "torch", "--workers", "0"]) == status
    return submission


@pytest.fixture(scope="module")
def predicted_celebdf(tmp_path_factory, tiny_checkpoint):
    """A Celeb-DF v2 tree of tiny clips and the submission predict made on its folder."""
    tmp = tmp_path_factory.mktemp("celebdf_predicted")
    root = celebdf_tree(tmp / "Celeb-DF-v2", clips=True)
    return root, _predict(root, tiny_checkpoint, tmp / "predicted" / "submission.csv")


def test_a_celebdf_tree_scores_the_submission_predict_made_on_it(predicted_celebdf, capsys):
    root, submission = predicted_celebdf
    with open(submission, newline="") as handle:
        predicted = [row["filename"] for row in csv.DictReader(handle)]
    assert sorted(predicted) == sorted(CELEBDF_VIDEOS)  # predict names them by their path under the root
    labels = score.read_labels(root)
    assert labels == {name: (label, name.split("/")[0]) for name, label in CELEBDF_VIDEOS.items()}
    out = submission.parent / "score"
    assert _score(capsys, "--submission", submission, "--labels", root, "--out-dir", out) == (0, "")
    result = json.loads((out / "score.json").read_text())
    assert result["overall"]["videos"] == 7 and result["overall"]["real"] == 4
    assert set(result["by_group"]) == {"Celeb-real", "YouTube-real", "Celeb-synthesis"}


def test_calibrate_reads_the_same_labels_from_the_tree(predicted_celebdf):
    from inference.fitting.calibration_sources import submission_scores

    root, submission = predicted_celebdf
    data = submission_scores(submission, root)  # inference.calibrate --submission S --labels ROOT
    assert submission.with_name("errors.csv").read_text().split() == ["filename,stage,reason"]  # faces in each
    assert sorted(data.videos) == sorted(CELEBDF_VIDEOS)
    assert [int(label) for label in data.labels] == [CELEBDF_VIDEOS[name] for name in data.videos]


def test_split_test_scores_a_submission_of_the_test_videos_alone(predicted_celebdf, tmp_path, capsys):
    root, submission = predicted_celebdf
    with open(submission, newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["filename"] in CELEBDF_TEST]
    test_only = tmp_path / "submission.csv"
    test_only.write_text("filename,label\n" + "".join(f"{r['filename']},{r['label']}\n" for r in rows))
    labels = score.read_labels(root, split="test")
    # List_of_testing_videos.txt's "1" means real: the labels come from the folders, YouTube-real is real
    assert labels["YouTube-real/00170.mp4"] == (0, "YouTube-real") and len(labels) == 4
    assert labels["Celeb-synthesis/id1_id0_0000.mp4"] == (1, "Celeb-synthesis")
    status, error = _score(capsys, "--submission", test_only, "--labels", root, "--split", "test")
    assert status == 0 and json.loads((tmp_path / "score.json").read_text())["overall"]["videos"] == 4
    status, error = _score(capsys, "--submission", test_only, "--labels", root)  # every video expected
    assert status == 2 and "3 missing: Celeb-real/id0_0000.mp4" in error
    from inference.fitting.calibration_sources import submission_scores  # calibrate --labels ROOT --labels-split test

    assert sorted(submission_scores(test_only, root, split="test").videos) == sorted(CELEBDF_TEST)


def test_a_submission_made_on_a_flat_folder_of_the_videos_matches_them_by_file_name(tmp_path):
    root = celebdf_tree(tmp_path / "cdf")
    flat = {name.split("/")[-1]: 0.5 for name in CELEBDF_VIDEOS}
    result = score.evaluate(flat, score.read_labels(root))
    assert result["overall"]["videos"] == 7 and result["overall"]["fake"] == 3
    # a DFDC root names files alone; predict --recursive on it names them part/file
    part = tmp_path / "dfdc" / "dfdc_train_part_3"
    part.mkdir(parents=True)
    entries = {"a.mp4": {"label": "REAL", "split": "train"}, "b.mp4": {"label": "FAKE", "original": "a.mp4"}}
    (part / "metadata.json").write_text(json.dumps(entries))
    names, y, _, groups = score.align(
        {f"{part.name}/a.mp4": 0.2, f"{part.name}/b.mp4": 0.9}, score.read_labels(part.parent)
    )
    assert names == [f"{part.name}/a.mp4", f"{part.name}/b.mp4"] and list(y) == [0, 1] and groups == [part.name] * 2
    # FF++'s file names repeat across methods: only its paths name a video
    with pytest.raises(score.ScoreError, match="7 missing"):
        score.evaluate(
            {name.split("/")[-1]: 0.5 for name in FFPP_VIDEOS}, score.read_labels(ffpp_tree(tmp_path / "ff"))
        )


def test_an_ffpp_tree_is_scored_by_paths_method_and_official_split(tmp_path, tiny_checkpoint, capsys):
    root = ffpp_tree(tmp_path / "FaceForensics++")  # empty files: predict names them, fails them (0.5)
    predicted = _predict(root, tiny_checkpoint, tmp_path / "all" / "submission.csv", status=1)
    assert "all 7 videos failed, none was scored" in capsys.readouterr().err
    assert _score(capsys, "--submission", predicted, "--labels", root) == (0, "")
    labels = score.read_labels(root, split="test")
    assert labels == {
        name: (label, name.split("/")[1] if label else "original")
        for name, label in FFPP_VIDEOS.items()
        if name in FFPP_TEST
    }
    submission = _write_submission(tmp_path / "submission.csv", FFPP_TEST)
    out = tmp_path / "report"
    assert _score(capsys, "--submission", submission, "--labels", root, "--split", "test", "--out-dir", out) == (0, "")
    result = json.loads((out / "score.json").read_text())
    assert result["overall"]["videos"] == 5 and set(result["by_group"]) == {"original", "Deepfakes", "Face2Face"}
    assert len(score.read_labels(root, layout="ffpp", split="train")) == 2  # 004 and 004_982
    status, error = _score(capsys, "--submission", submission, "--labels", root, "--split", "val")
    assert status == 2 and error == (
        f"error: {root}: no videos in the 'valid' split (splits here: test, train; the ffpp layout takes them "
        "from splits/train.json, val.json and test.json)"
    )


def test_bad_labels_and_splits_end_in_one_line_naming_the_problem(tmp_path, capsys):
    submission = _write_submission(tmp_path / "submission.csv", ["a.mp4"])
    (tmp_path / "nothing" / "clips").mkdir(parents=True)
    status, error = _score(capsys, "--submission", submission, "--labels", tmp_path / "nothing")
    assert status == 2 and error.startswith(f"error: {tmp_path / 'nothing'}: layout not recognised")
    folders = tmp_path / "folders"
    (folders / "real").mkdir(parents=True)
    (folders / "real" / "a.mp4").write_bytes(b"")
    status, error = _score(capsys, "--submission", submission, "--labels", folders, "--split", "test")
    assert status == 2 and error == f"error: {folders}: the folders layout has no official splits: leave out --split"
    assert _score(capsys, "--submission", submission, "--labels", folders)[0] == 0  # real/a.mp4 by its file name
    cdf = celebdf_tree(tmp_path / "cdf")
    (cdf / "List_of_testing_videos.txt").unlink()
    status, error = _score(capsys, "--submission", submission, "--labels", cdf, "--split", "test")
    assert status == 2 and "no videos in the 'test' split (splits here: train" in error
    assert "List_of_testing_videos.txt" in error
    labels_csv = tmp_path / "labels.csv"
    labels_csv.write_text("filename,label\na.mp4,1\n")
    status, error = _score(capsys, "--submission", submission, "--labels", labels_csv, "--split", "test")
    assert (
        status == 2
        and error
        == f"error: {labels_csv}: a labels file has no splits: give the dataset's folder, or leave out --split"
    )


def test_dfdc_metadata_split_fields_choose_a_split(tmp_path, capsys):
    part = tmp_path / "dfdc_train_part_0"
    part.mkdir()
    (part / "metadata.json").write_text(
        json.dumps(
            {
                "a.mp4": {"label": "REAL", "split": "train"},
                "b.mp4": {"label": "FAKE", "split": "test", "original": "a.mp4"},
            }
        )
    )
    assert score.read_labels(tmp_path, split="test") == {"b.mp4": (1, "dfdc_train_part_0")}
    assert score.read_labels(part / "metadata.json", split="train") == {"a.mp4": (0, None)}
    submission = _write_submission(tmp_path / "submission.csv", ["a.mp4", "b.mp4"])
    status, error = _score(capsys, "--submission", submission, "--labels", tmp_path, "--split", "valid")
    assert status == 2 and "no videos in the 'valid' split (splits here: test, train" in error


def test_celebdf_test_list_entries_not_on_disk_are_counted_and_a_bom_is_read(tmp_path, caplog):
    root = celebdf_tree(tmp_path / "cdf")
    listed = root / "List_of_testing_videos.txt"
    listed.write_text("\ufeff" + listed.read_text() + "1 Celeb-real/id9_0009.mp4\n0 Celeb-synthesis/id9_id8_0009.mp4\n")
    with caplog.at_level(logging.WARNING):
        labels = score.read_labels(root, split="test")
    assert len(labels) == len(CELEBDF_TEST)
    assert "2 of its 6 videos are not on disk (Celeb-real/id9_0009.mp4, Celeb-synthesis/id9_id8_0009.mp4)" in (
        caplog.text
    )


def test_ffpp_with_test_json_but_no_train_json_names_the_missing_file(tmp_path, capsys):
    root = ffpp_tree(tmp_path / "ffpp")
    (root / "splits" / "train.json").unlink()
    submission = tmp_path / "submission.csv"
    submission.write_text("filename,label\n" + "".join(f"{name},0.5\n" for name in FFPP_TEST))
    status, error = _score(capsys, "--submission", submission, "--labels", root, "--split", "test")
    assert status == 2 and "splits/train.json: missing" in error
