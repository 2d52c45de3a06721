"""docs/fine_tune.md, run as written on a Celeb-DF-v2-shaped tree: every command of the walkthrough
(its settings block replaced by this test's folders, a tiny config and a tiny checkpoint), then
--init-from from the two other formats on the same preprocessed data, and ./run_all.sh's plan for a
dataset in that layout."""

from __future__ import annotations

import csv
import os
import re
import subprocess
from pathlib import Path

import pytest
import timm
import torch
import yaml

from tests.conftest import REPO_ROOT, save_tiny_checkpoint
from tests.layout_trees import celebdf_people_tree, write_person_clip
from training.models.zoo import create_model

WALKTHROUGH = REPO_ROOT / "docs" / "fine_tune.md"
SETTINGS = ("DATA", "WORK", "START", "CONFIG", "VIDEO")


def walkthrough_commands(text: str) -> tuple[str, list[str]]:
    """(the settings block, every other command) of the page's ```bash blocks, continuation lines joined."""
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    commands = []
    for block in blocks[1:]:
        for command in block.replace("\\\n", " ").splitlines():
            if command.strip() and not command.lstrip().startswith("#"):
                commands.append(" ".join(command.split()))
    return blocks[0], commands


def _tiny_config(path: Path) -> Path:
    config = yaml.safe_load((REPO_ROOT / "configs" / "demo.yaml").read_text())
    config["model"]["input_size"] = 32
    config["data"].update(batch_size=8, val_batch_size=16, num_workers=0)
    config["training"].update(epochs=2, batches_per_epoch=1, channels_last=False)
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def walked(tmp_path_factory):
    """The walkthrough's commands run in order; their outputs, by command."""
    root = tmp_path_factory.mktemp("walkthrough")
    data = celebdf_people_tree(root / "Celeb-DF-v2")
    settings = {
        "DATA": str(data),
        "WORK": str(root / "work"),
        "START": str(save_tiny_checkpoint(root / "start.pt", seed=3, input_size=32)),
        "CONFIG": str(_tiny_config(root / "tiny.yaml")),
        "VIDEO": str(root / "new" / "clip.mp4"),
    }
    write_person_clip(Path(settings["VIDEO"]), person=9, take=3, fake=True)
    environment = {**os.environ, **settings, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO_ROOT)}
    _, commands = walkthrough_commands(WALKTHROUGH.read_text())
    outputs = {}
    for command in commands:
        result = subprocess.run(
            ["bash", "-c", command], cwd=REPO_ROOT, env=environment, capture_output=True, text=True, timeout=600
        )
        assert result.returncode == 0, f"{command}\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
        outputs[command.split()[2]] = result.stdout + result.stderr
    return {"root": root, "outputs": outputs, **settings}


def test_the_page_names_its_settings_and_commands_of_every_step():
    settings, commands = walkthrough_commands(WALKTHROUGH.read_text())
    assert [line.split("=")[0] for line in settings.splitlines() if "=" in line.split("#")[0]] == list(SETTINGS)
    modules = [command.split()[2] for command in commands]
    assert modules == [
        "preprocess.datasets",
        "preprocess.run_all",
        "training.train",
        "inference.calibrate",
        "inference.evaluate",
        "inference.detect",
    ]


@pytest.mark.slow
def test_the_walkthrough_fine_tunes_scores_the_test_split_and_judges_a_new_video(walked):
    work, outputs = Path(walked["WORK"]), walked["outputs"]
    assert "celebdf layout" in outputs["preprocess.datasets"]
    init_line = next(line for line in outputs["training.train"].splitlines() if "init from" in line)
    total = len(torch.load(walked["START"], weights_only=True)["state_dict"])
    assert f"loaded {total} tensors" in init_line and "skipped" not in init_line, init_line
    with open(work / "weights" / "logs" / "celebdf_0_111" / "metrics.csv", newline="") as handle:
        assert [int(row["epoch"]) for row in csv.DictReader(handle)] == [0, 1], "a fresh run from epoch 0"
    assert "at least 30" in outputs["inference.calibrate"] and (work / "ensemble.yaml").is_file()
    assert "calibration:" not in (work / "ensemble.yaml").read_text(), "4 + 4 out-of-fold videos: refused"
    table = (work / "evaluation" / "table.md").read_text()
    assert "Celeb-DF-v2_test" in table and "ensemble" in table
    with open(next((work / "evaluation" / "predictions").rglob("submission.csv")), newline="") as handle:
        scored = sorted(row["filename"] for row in csv.DictReader(handle))
    listed = (Path(walked["DATA"]) / "List_of_testing_videos.txt").read_text().split()[1::2]
    assert scored == sorted(listed), "exactly the official test split"
    line = r"^(REAL|FAKE) +[01]\.\d{3} +\S*/new/clip\.mp4 +\(30 faces in 30/30 frames"
    assert re.search(line, outputs["inference.detect"], re.M), outputs["inference.detect"][-2000:]


@pytest.mark.parametrize("source", ["original release", "timm encoder"])
@pytest.mark.slow
def test_init_from_the_other_formats_on_the_same_data(walked, source, tmp_path, caplog):
    import logging

    from training import train as train_module

    torch.manual_seed(5)
    model = create_model("resnet18")
    if source == "original release":
        state = {f"module.{name}": value for name, value in model.state_dict().items()}
        torch.save({"epoch": 30, "state_dict": state, "bce_best": 0.25}, tmp_path / "weights.pt")
        expected_new = 0
    else:
        torch.save(timm.create_model("resnet18").state_dict(), tmp_path / "weights.pt")
        expected_new = 2  # the head: fc.weight, fc.bias
    args = ["--config", walked["CONFIG"], "--data-dir", str(Path(walked["WORK"]) / "data"), "--fold", "0"]
    args += ["--output-dir", str(tmp_path / "out"), "--epochs", "1", "--init-from", str(tmp_path / "weights.pt")]
    with caplog.at_level(logging.INFO, logger="training.loop.start_from"):
        summary = train_module.train(train_module.parse_args([*args, "--device", "cpu"]))
    line = next(record.message for record in caplog.records if "init from" in record.message)
    loaded = len(model.state_dict()) - expected_new
    assert f"loaded {loaded} tensors" in line and ("newly initialised 2 (fc.weight, fc.bias)" in line) == bool(
        expected_new
    )
    assert summary["epochs_run"] == 1 and summary["best_epoch"] == 0
    if source == "original release":
        best = torch.load(tmp_path / "out" / "tiny_0_111_last.pt", weights_only=True)
        assert best["epoch"] == 0


@pytest.mark.slow
def test_run_all_plans_a_celebdf_test_split_as_an_evaluation(walked, tmp_path):
    environment = {**os.environ, "DRY_RUN": "1", "WORK_DIR": str(tmp_path / "work"), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [str(REPO_ROOT / "run_all.sh"), walked["DATA"], walked["DATA"]],
        cwd=REPO_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "is a celebdf dataset (splits: test train): its test split is scored" in result.stdout
    evaluate = next(line for line in result.stdout.splitlines() if "inference.evaluate" in line)
    assert f"--dataset {walked['DATA']} --split test --ensemble" in evaluate
    assert "--predict detector_scale=0.5 --predict no_recall_boost=true" in evaluate
    assert not any("inference.predict" in line for line in result.stdout.splitlines())


def test_run_all_refuses_to_score_a_dataset_without_a_test_split_on_itself(tmp_path):
    from tests.layout_trees import ffpp_tree

    data = ffpp_tree(tmp_path / "ffpp")
    for split in (data / "splits").iterdir():
        split.unlink()
    environment = {**os.environ, "DRY_RUN": "1", "WORK_DIR": str(tmp_path / "work"), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [str(REPO_ROOT / "run_all.sh"), str(data), str(data)],
        cwd=REPO_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert "has no official test split (splits: none)" in result.stderr and "give a separate TEST_DIR" in result.stderr


def test_a_video_replaced_in_place_is_predicted_again(tmp_path):
    from inference.evaluation.evaluate_models import ModelSource, prediction_source

    video, folder = tmp_path / "a.mp4", tmp_path / "set"
    video.write_bytes(b"first")
    folder.mkdir()
    (folder / "a.mp4").symlink_to(video)
    labels = tmp_path / "labels.csv"
    labels.write_text("filename,label\na.mp4,0\n")
    source = ModelSource(checkpoints=(labels,))
    before = prediction_source(source, folder, labels, None)
    assert prediction_source(source, folder, labels, None) == before
    video.write_bytes(b"another video")
    assert prediction_source(source, folder, labels, None) != before
