"""Whole commands timed against each other (inference/benchmarks/command_bench.py), and the original's code as
one command (inference/benchmarks/original_baseline.py's main)."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from inference.benchmarks import command_bench, original_baseline
from inference.models.ensemble import load_member
from tests.conftest import dfdc_metadata, save_tiny_checkpoint


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_the_originals_command_scores_each_video_as_its_steps_do(demo_world, tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    video = sorted(dfdc_metadata(demo_world))[0]
    (videos / video.name).symlink_to(video)
    (videos / "broken.mp4").write_bytes(b"not a video")
    checkpoint = save_tiny_checkpoint(tmp_path / "m.pt", input_size=64)
    out = tmp_path / "out" / "submission.csv"
    assert original_baseline.main(["--test-dir", str(videos), "--models", str(checkpoint), "--output", str(out)]) == 0
    rows = {row["filename"]: float(row["label"]) for row in _rows(out)}
    member = load_member(checkpoint, torch.device("cpu"))
    expected = original_baseline.predict_video(video, original_baseline.original_detector("cpu"), [member]).score
    assert rows == {"broken.mp4": 0.5, video.name: pytest.approx(expected, abs=1e-6)}, "a failed video: 0.5"


def test_the_report_times_warm_rounds_in_turns_and_compares_the_best(tmp_path, monkeypatch, capsys):
    """Round 0 warms the caches and is not counted; the commands run in turns; the speed-ups are
    best against best; the score differences are between the commands' own outputs."""
    seconds = {"original": iter([99.0, 40.0, 44.0]), "exact": iter([50.0, 20.0, 18.0]), "fast": iter([30.0, 9.0, 10.0])}
    labels = {"original": 0.30, "exact": 0.30, "fast": 0.34}
    order = []

    def run(name, models, test_dir, output):
        order.append(name)
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(f"filename,label\na.mp4,{labels[name]}\nb.mp4,0.9\n")
        return next(seconds[name]), 0.5

    monkeypatch.setattr(command_bench, "run", run)
    argv = ["--test-dir", str(tmp_path), "--models", "m.pt", "--rounds", "2", "--json", str(tmp_path / "r.json")]
    assert command_bench.main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report == json.loads((tmp_path / "r.json").read_text())
    assert order == ["original", "exact", "fast"] * 3
    assert report["seconds"] == {"original": [40.0, 44.0], "exact": [20.0, 18.0], "fast": [9.0, 10.0]}
    assert report["speedup_over_original"] == {"exact": 2.22, "fast": 4.44}
    assert report["max_score_difference"]["exact_vs_original"][0] == pytest.approx(0.0)
    difference, video = report["max_score_difference"]["fast_vs_exact"]
    assert difference == pytest.approx(0.04) and video == "a.mp4"
    assert report["videos"] == 2 and report["machine"]["cpu"] and len(report["load_average_before"]["fast"]) == 2
    assert report["other_work_cpu_s"] == {name: [0.5, 0.5] for name in ("original", "exact", "fast")}


def test_a_command_that_fails_stops_the_bench_with_its_error(tmp_path):
    with pytest.raises(command_bench.cli.InputError, match="original: .* failed"):
        command_bench.run("original", ["--models", str(tmp_path / "absent.pt")], tmp_path, tmp_path / "o.csv")


@pytest.mark.parametrize(
    ("rounds", "message"), [("0", "must be more than 0, got 0"), ("two", "'two' is not a whole number")]
)
def test_rounds_must_be_a_whole_number_above_0(tmp_path, capsys, rounds, message):
    with pytest.raises(SystemExit) as refused:
        command_bench.parse_args(["--test-dir", str(tmp_path), "--models", "m.pt", "--rounds", rounds])
    assert refused.value.code == 2 and f"argument --rounds: {message}" in capsys.readouterr().err
