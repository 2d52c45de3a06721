"""./run_all.sh's calibration and prediction stages, run with a stand-in Python that records each
command and plays inference.scoring.dataset_labels, inference.calibrate and inference.predict: labelled
test videos are scored raw first and the calibration checked on them (kept, the submission predicted again with it; or
refused, the raw scores are the submission), the summary says what became of it, and no
--allow-bound fallback is left."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.conftest import REPO_ROOT

STAND_IN = r"""#!/usr/bin/env bash
# a stand-in Python for ./run_all.sh: records `-m MODULE ARGS`, plays calibrate and predict
[ "$1" = -c ] && { echo 1; exit 0; }
[ "$1" = -m ] || exit 0  # tools/check_requirements.py: all there
echo "$*" >> "$STAND_IN_LOG"
module=$2; shift 2
value() { local key=$1; shift; while [ "$#" -gt 0 ]; do [ "$1" = "$key" ] && { echo "$2"; return; }; shift; done; }
case "$module" in
inference.scoring.dataset_labels) echo none ;;  # a plain folder of test videos
inference.calibrate)
    out=$(value --out "$@"); out=${out:-$(value --ensemble "$@")}
    if [ -n "$(value --held-out "$@")" ] && [ "$STAND_IN_HELD_OUT" = worse ]; then
        printf 'members: []\n' > "$out"
        printf "calibration refused: the calibration makes the held-out videos' log loss worse: "
        printf "0.1210 raw, 0.1500 calibrated; %s written without one (uncalibrated); " "$out"
        echo "held-out log loss 0.1210 raw, as it stays"
    else
        printf 'members: []\ncalibration:\n  method: temperature\n' > "$out"
        echo "calibration stored in $out: held-out log loss 0.1210 raw, 0.1130 calibrated"
    fi ;;
inference.predict)
    out=$(value --output "$@"); mkdir -p "$(dirname "$out")"
    for file in "$out" "$(dirname "$out")/errors.csv" "$(dirname "$out")/details.jsonl"; do echo "$*" > "$file"; done ;;
esac
exit 0
"""


def _run_all(
    tmp_path: Path, labelled: bool, held_out: str = "better", labels_name: str = "labels.csv"
) -> tuple[str, list[str]]:
    """(run_all's output, the modules it ran with their arguments) on real-data folders."""
    stand_in = tmp_path / "python"
    stand_in.write_text(STAND_IN)
    stand_in.chmod(0o755)
    data, test = tmp_path / "data", tmp_path / "test"
    data.mkdir()
    test.mkdir()
    if labelled:
        (test / labels_name).write_text("filename,label\n" if labels_name == "labels.csv" else "{}")
    log = tmp_path / "commands.log"
    environment = {
        **os.environ,
        "PYTHON": str(stand_in),
        "STAND_IN_LOG": str(log),
        "STAND_IN_HELD_OUT": held_out,
        "WORK_DIR": str(tmp_path / "work"),
        "WEIGHTS_DIR": str(tmp_path / "weights"),
        "TRAIN_JOBS": "configs/b7.yaml:0:111 configs/b7.yaml:0:555",
    }
    result = subprocess.run(
        [str(REPO_ROOT / "run_all.sh"), str(data), str(test)],
        capture_output=True,
        text=True,
        timeout=120,
        env=environment,
        cwd=REPO_ROOT,
    )
    assert result.returncode == 0, result.stderr
    commands = [line for line in log.read_text().splitlines() if "inference.calibrate" in line or "predict " in line]
    return result.stdout, commands


def test_labelled_test_videos_check_the_calibration_and_keep_it_when_it_helps(tmp_path):
    out, commands = _run_all(tmp_path, labelled=True)
    work = tmp_path / "work"
    raw = f"{work}/submission_raw/submission.csv"
    assert commands[0].startswith("-m inference.calibrate --runs ") and "--uncalibrated-if-refused" in commands[0]
    assert commands[1].startswith(
        f"-m inference.predict --test-dir {tmp_path / 'test'} --ensemble {work}/ensemble.yaml"
    )
    assert f"--output {raw} --uncalibrated --detector-scale 0.5" in commands[1]
    assert f"--held-out {raw} --held-out-labels {tmp_path / 'test'}/labels.csv --uncalibrated-if-refused" in commands[2]
    assert commands[2].startswith(f"-m inference.calibrate --ensemble {work}/ensemble.yaml --oof ")
    assert f"--output {work}/submission/submission.csv --detector-scale 0.5" in commands[3], "predicted again"
    assert len(commands) == 4 and "allow-bound" not in " ".join(commands)
    assert out.rstrip().endswith(
        f"calibration: calibration stored in {work}/ensemble.yaml: held-out log loss 0.1210 raw, 0.1130 calibrated"
    )


def test_a_calibration_that_makes_the_test_videos_worse_leaves_the_raw_scores(tmp_path):
    out, commands = _run_all(tmp_path, labelled=True, held_out="worse")
    work = tmp_path / "work"
    assert len(commands) == 3, "no second prediction: the raw scores are the submission"
    assert "the ensemble stays uncalibrated: the submission is its raw scores" in out
    for name in ("submission.csv", "errors.csv", "details.jsonl"):
        assert (work / "submission" / name).read_text() == (work / "submission_raw" / name).read_text()
    assert "calibration:" not in (work / "ensemble.yaml").read_text()
    assert out.rstrip().splitlines()[-1].startswith("calibration: calibration refused: ")
    assert out.rstrip().endswith("held-out log loss 0.1210 raw, as it stays")


def test_unlabelled_test_videos_are_predicted_once_with_the_out_of_fold_calibration(tmp_path):
    out, commands = _run_all(tmp_path, labelled=False)
    assert [command.split()[1] for command in commands] == ["inference.calibrate", "inference.predict"]
    assert "--uncalibrated " not in commands[1] and commands[1].endswith("--resume --no-recall-boost")
    assert "calibration: calibration stored in" in out


def test_a_dfdc_parts_metadata_labels_its_videos_for_the_check_and_the_score(tmp_path):
    out, commands = _run_all(tmp_path, labelled=True, labels_name="metadata.json")
    metadata = f"{tmp_path / 'test'}/metadata.json"
    assert f"--held-out-labels {metadata}" in commands[2]
    assert f"scoring: {tmp_path / 'work'}/submission/submission.csv against {metadata}" in out
