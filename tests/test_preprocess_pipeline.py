"""The five preprocessing steps end to end on DFDC (sample and demo), FaceForensics++ and CSV layouts."""

from __future__ import annotations

import csv
import json
import shutil

import pytest

from preprocess import run_all
from preprocess.datasets import load_dataset
from preprocess.outputs import boxes_path, crops_dir, landmarks_dir
from tests.conftest import dfdc_metadata, run_until_killed, shared_data
from tests.preprocess_checks import assert_pipeline_complete, read_folds

# the same clips through MTCNN here and in other modules: each frame once (tests/detection_memo.py)
pytest_plugins = ("tests.detection_memo",)
pytestmark = pytest.mark.usefixtures("remembered_detections")


@pytest.fixture(scope="module")
def demo_preprocessed(demo_world, tmp_path_factory):
    """run_all in this process (worker processes: test_walkthrough runs run_all --workers 2), each
    of the four steps without starting two interpreters that import torch and MTCNN."""
    out = tmp_path_factory.mktemp("demo_preprocessed")
    assert run_all.main(["--root-dir", str(demo_world), "--output-dir", str(out), "--workers", "1"]) == 0
    return out


def test_demo_world(demo_world, demo_preprocessed):
    records = load_dataset(demo_world)
    assert_pipeline_complete(demo_preprocessed, records)
    folds = {row["fold"] for row in read_folds(demo_preprocessed / "folds.csv")}
    assert folds == {"0", "1"}, "parts 0 and 3 are folds 0 and 1"
    assert not (demo_preprocessed / "preprocess_failures.csv").exists()
    # each crop says how its video was made: the demo world's metadata names every fake's method
    made = {r.video: r.method or "real" for r in records}
    rows = read_folds(demo_preprocessed / "folds.csv")
    assert all(row["method"] == made[row["video"]] for row in rows)
    assert {row["method"] for row in rows if row["label"] == "1"} <= {"face_swap", "self_blend"}


@pytest.mark.shared_data
@pytest.mark.slow
def test_dfdc_mini_sample(tmp_path):
    root = tmp_path / "dfdc_mini"
    shutil.copytree(shared_data("dfdc_mini"), root)
    assert run_all.main(["--root-dir", str(root)]) == 0
    records = load_dataset(root)
    assert_pipeline_complete(root, records)
    assert boxes_path(root, "004").exists() and boxes_path(root, "634").exists()
    # the fake whose original is missing is cropped at its own faces
    assert boxes_path(root, "yhffcuhhjy").exists()
    assert len(list(crops_dir(root, "yhffcuhhjy").glob("*.png"))) >= 25
    assert list(landmarks_dir(root, "yhffcuhhjy").glob("*.npy"))
    folds = {row["video"]: row["fold"] for row in read_folds(root / "folds.csv")}
    assert folds["004"] == folds["004_982"] and folds["634"] == folds["634_660"]
    assert folds["yhffcuhhjy"] == "3", "part 10 belongs to fold 10 // 3"


def _link(source, target):
    target.parent.mkdir(parents=True, exist_ok=True)
    target.symlink_to(source)


def test_faceforensics_layout(demo_world, tmp_path):
    entries = dfdc_metadata(demo_world)
    reals = sorted(path for path, entry in entries.items() if entry["label"] == "REAL")
    numbers = {real.name: f"{i:03d}" for i, real in enumerate(reals)}
    for real in reals:
        _link(real, tmp_path / "original_sequences/youtube/c23/videos" / f"{numbers[real.name]}.mp4")
    for n, (path, entry) in enumerate(sorted((p, e) for p, e in entries.items() if e["label"] == "FAKE")):
        method = ("Deepfakes", "FaceSwap")[n % 2]
        name = f"{numbers[entry['original']]}_{900 + n}.mp4"
        _link(path, tmp_path / "manipulated_sequences" / method / "c23/videos" / name)
    assert run_all.main(["--root-dir", str(tmp_path)]) == 0
    records = load_dataset(tmp_path)
    assert {r.video for r in records if not r.is_fake} == {"youtube-c23-000", "youtube-c23-001"}
    assert all(r.original in {"youtube-c23-000", "youtube-c23-001"} for r in records if r.is_fake)
    assert {r.source for r in records if r.is_fake} == {"Deepfakes", "FaceSwap"}
    assert_pipeline_complete(tmp_path, records)
    assert len({row["fold"] for row in read_folds(tmp_path / "folds.csv")}) == 2


def test_csv_layout(demo_world, tmp_path):
    rows = []
    for path, entry in sorted(dfdc_metadata(demo_world).items()):
        _link(path, tmp_path / "clips" / path.name)
        rows.append(
            {
                "path": f"clips/{path.name}",
                "label": entry["label"],
                "original": f"clips/{entry['original']}" if entry["original"] else "",
            }
        )
    with open(tmp_path / "dataset.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["path", "label", "original"])
        writer.writeheader()
        writer.writerows(rows)
    assert run_all.main(["--root-dir", str(tmp_path)]) == 0
    records = load_dataset(tmp_path)
    assert len(records) == 6 and all(r.video.startswith("clips__") for r in records)
    assert_pipeline_complete(tmp_path, records)


def test_broken_videos_are_recorded_and_never_stop_the_run(demo_world, tmp_path):
    part = tmp_path / "dfdc_train_part_0"
    part.mkdir()
    real = next(p for p, e in dfdc_metadata(demo_world).items() if e["label"] == "REAL")
    _link(real, part / "good.mp4")
    (part / "empty.mp4").write_bytes(b"")
    (part / "text.mp4").write_text("not a video, just text\n" * 50)
    (part / "truncated.mp4").write_bytes(real.read_bytes()[:3000])
    metadata = {
        name: {"label": "REAL", "split": "train", "original": None}
        for name in ("good.mp4", "empty.mp4", "text.mp4", "truncated.mp4")
    }
    (part / "metadata.json").write_text(json.dumps(metadata))
    assert run_all.main(["--root-dir", str(tmp_path)]) == 0
    with open(tmp_path / "preprocess_failures.csv", newline="") as handle:
        failures = list(csv.DictReader(handle))
    detect = {row["video"]: row["reason"] for row in failures if row["step"] == "detect_faces"}
    assert set(detect) == {"empty", "text", "truncated"}
    assert "empty (0 bytes)" in detect["empty"] and "text.mp4" in detect["text"]
    assert "good" not in {row["video"] for row in failures}
    assert {row["video"] for row in read_folds(tmp_path / "folds.csv")} == {"good"}


def _final_outputs(root) -> dict[str, bytes]:
    """Every finished output file under root (hidden partial leftovers of a killed run excluded)."""
    files = {}
    for folder in ("boxes", "crops", "landmarks", "diffs"):
        for path in sorted((root / folder).rglob("*")):
            relative = path.relative_to(root)
            if path.is_file() and not any(part.startswith(".") for part in relative.parts):
                files[str(relative)] = path.read_bytes()
    files["folds.csv"] = (root / "folds.csv").read_bytes()
    return files


# Dies at the 15th face crop of extract_crops (one process): some videos cropped, one in progress.
# Like the reference run (demo_preprocessed) and the resumed one, it runs in one process, so with
# the same threads (os.cpu_count()): float sums, and so the stored boxes, differ in their last
# digits with the thread count.
KILLED_AT_THE_15TH_CROP = """
import os, signal, sys
import preprocess.extract_crops as extract_crops
from preprocess import run_all

crop = extract_crops.crop_face
calls = []

def crop_then_die(*args, **kwargs):
    calls.append(1)
    if len(calls) == 15:
        os.kill(os.getpid(), signal.SIGKILL)
    return crop(*args, **kwargs)

extract_crops.crop_face = crop_then_die
sys.exit(run_all.main(sys.argv[1:]))
"""


def test_killed_run_resumes_to_the_same_outputs(demo_world, demo_preprocessed, tmp_path):
    out = tmp_path / "out"
    run_until_killed(KILLED_AT_THE_15TH_CROP, ["--root-dir", str(demo_world), "--output-dir", str(out)])
    assert not (out / "folds.csv").exists() and not (out / "landmarks").exists()
    finished = [p for p in (out / "crops").iterdir() if not p.name.startswith(".")]
    assert 1 <= len(finished) < len(load_dataset(demo_world)), "killed part way through extract_crops"
    [half_made] = [p.name for p in (out / "crops").iterdir() if p.name.startswith(".")]
    assert half_made.endswith(".partial"), "killed inside atomic_dir, writing a video's crops"
    assert run_all.main(["--root-dir", str(demo_world), "--output-dir", str(out), "--workers", "1"]) == 0
    assert _final_outputs(out) == _final_outputs(demo_preprocessed)
    assert not [p for p in (out / "crops").iterdir() if p.name.startswith(".")], "the half-made folder is swept"


def test_shards_split_the_videos_without_overlap(demo_world, tmp_path):
    from preprocess import detect_faces

    for index in range(2):
        assert (
            detect_faces.main(
                ["--root-dir", str(demo_world), "--output-dir", str(tmp_path / str(index)), "--shard", f"{index}/2"]
            )
            == 0
        )
    shares = [{p.stem for p in (tmp_path / str(index) / "boxes").glob("*.json")} for index in range(2)]
    reals = {p.stem for p, e in dfdc_metadata(demo_world).items() if e["label"] == "REAL"}
    assert shares[0] | shares[1] == reals and not shares[0] & shares[1] and all(shares)


def test_folders_of_photos_are_one_frame_videos(tmp_path):
    from PIL import Image

    from preprocess.demo_world.identities import builtin_photos

    photos = builtin_photos()
    (tmp_path / "real").mkdir()
    (tmp_path / "fake").mkdir()
    Image.fromarray(photos["astronaut"]).save(tmp_path / "real" / "astronaut.png")
    Image.fromarray(photos["grace_hopper"]).save(tmp_path / "fake" / "hopper.jpg")
    assert run_all.main(["--root-dir", str(tmp_path)]) == 0
    rows = read_folds(tmp_path / "folds.csv")
    assert sorted((row["video"], row["file"], row["label"]) for row in rows) == [
        ("fake__hopper", "0_0.png", "1"),
        ("real__astronaut", "0_0.png", "0"),
    ]
