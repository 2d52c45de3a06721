"""A resumed inference.predict scores again a video changed since its row was written (replaced
under the same name), saying so, and keeps the rows of the others without reading them again
(issue 28, item 17: rows were keyed by file name alone, and a fake copied over a real kept the
real's score, 0.0507, where a fresh run gave 0.9526, without a word)."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import pytest
import torch

from common import cli
from inference.pipeline.file_identity import HEAD_BYTES, identity_changes
from inference.pipeline.reader import FaceReader
from inference.prediction import predict_folder as predict
from inference.prediction.progress import Progress, progress_path, read_progress, run_settings
from tests.conftest import dfdc_metadata, save_tiny_checkpoint
from tests.test_predict_resume import _arguments, _details, _rows

# the same clips through MTCNN here and in other modules: each frame once (tests/detection_memo.py)
pytest_plugins = ("tests.detection_memo",)
pytestmark = pytest.mark.usefixtures("remembered_detections")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return save_tiny_checkpoint(tmp_path_factory.mktemp("model") / "tiny.pt")


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, demo_world, checkpoint) -> tuple[Path, dict[str, dict], str]:
    """A folder of a real and two fakes (copies), the progress rows a run over it left (its final
    files could not be written, as on a full disk) and the real's name."""
    entries = dfdc_metadata(demo_world)
    real = next(path for path, entry in entries.items() if entry["label"] == "REAL")
    fakes = [path for path, entry in entries.items() if entry["label"] == "FAKE"][:2]
    folder = tmp_path_factory.mktemp("first") / "videos"
    folder.mkdir()
    for source in (real, *fakes):
        shutil.copy2(source, folder / source.name)
    out = folder.parent / "out" / "submission.csv"

    def full_disk(*_):
        raise OSError(28, "No space left on device")

    with pytest.MonkeyPatch.context() as patches:
        patches.setattr(predict, "write_outputs", full_disk)
        assert cli.run(predict.main, _arguments(folder, checkpoint, out)) == 2
    rows = read_progress(progress_path(out))[1]
    assert sorted(rows) == sorted(path.name for path in (real, *fakes))
    return folder, rows, real.name


@pytest.fixture
def resumable(tmp_path, first_run, checkpoint):
    """This test's copy of the folder (files and times as they were) with the first run's rows in
    the progress file of a run over it, and that run's arguments with --resume."""
    folder, rows, real = first_run
    test_dir = tmp_path / "videos"
    shutil.copytree(folder, test_dir)  # copy2: the same bytes and modification times
    out = tmp_path / "out" / "submission.csv"
    arguments = [*_arguments(test_dir, checkpoint, out), "--resume"]
    settings = run_settings(predict.parse_args(arguments), torch.device("cpu"), "f32", 1)
    with Progress(progress_path(out), settings, resume=False) as progress:
        for row in rows.values():
            progress.add(row)  # as read back: with its file's identity
    return test_dir, out, arguments, rows, real


@pytest.fixture
def reads(monkeypatch) -> list[str]:
    """The names of the videos a run reads."""
    read, names = FaceReader._read, []

    def recorded(self, path, *ahead):
        names.append(path.name)
        return read(self, path, *ahead)

    monkeypatch.setattr(FaceReader, "_read", recorded)
    return names


def _labels(out: Path) -> dict[str, float]:
    return {row["filename"]: float(row["label"]) for row in _rows(out)}


def test_a_fake_copied_over_a_real_is_scored_again_and_named(resumable, reads, caplog):
    test_dir, out, arguments, rows, real = resumable
    fake, other = sorted(set(rows) - {real})
    scores = {name: row["score"] for name, row in rows.items()}
    assert abs(scores[real] - scores[fake]) > 1e-4, "the two videos score apart"
    shutil.copyfile(test_dir / fake, test_dir / real)  # a fake copied over a real under the real's name
    caplog.set_level(logging.INFO, logger="inference")
    assert predict.main(arguments) == 0
    assert reads == [real], "only the changed video is read again"
    changed = [r.getMessage() for r in caplog.records if "changed since" in r.getMessage()]
    assert len(changed) == 1 and changed[0].startswith(f"{real}: changed since its row in {progress_path(out)}")
    assert changed[0].endswith("): scored again") and "modified since" in changed[0]
    labels = _labels(out)
    assert labels[real] == pytest.approx(scores[fake], abs=1.5e-6), "the fake's score, not the real's old one"
    assert labels[fake] == pytest.approx(scores[fake], abs=1.5e-6)
    assert labels[other] == pytest.approx(scores[other], abs=1.5e-6)
    assert "2 of these scored already" in caplog.text


def test_random_bytes_under_a_videos_name_make_an_error_row_not_its_old_score(resumable, reads, caplog):
    """5 KB of random bytes in place of a video: read again, a decode error with the default score."""
    test_dir, out, arguments, rows, _ = resumable
    victim = sorted(rows)[1]
    (test_dir / victim).write_bytes(os.urandom(5 * 1024))
    caplog.set_level(logging.WARNING, logger="inference")
    assert predict.main(arguments) == 0
    assert reads == [victim]
    assert f"{victim}: changed since" in caplog.text and "5120 now" in caplog.text
    [error] = _rows(out.parent / "errors.csv")
    assert error["filename"] == victim and error["stage"] == "decode"
    assert _labels(out)[victim] == 0.5


def test_the_same_size_and_time_with_another_first_mib_is_scored_again(resumable, reads, caplog):
    test_dir, _, arguments, rows, _ = resumable
    victim = sorted(rows)[2]
    path = test_dir / victim
    before = path.stat()
    data = bytearray(path.read_bytes())
    data[min(len(data), HEAD_BYTES) // 2] ^= 0xFF  # one byte of the first MiB
    path.write_bytes(bytes(data))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # as `cp -p` or rsync -t keep times
    assert path.stat().st_size == before.st_size and path.stat().st_mtime_ns == before.st_mtime_ns
    caplog.set_level(logging.WARNING, logger="inference")
    assert predict.main(arguments) == 0
    assert reads == [victim]
    assert f"{victim}: changed since" in caplog.text and "its first MiB differs" in caplog.text


def test_rows_of_an_earlier_predict_without_identity_are_scored_again_with_one_warning(resumable, reads, caplog):
    """Decided: a row that cannot tell which file it scored is not trusted; its video is read again."""
    _, out, arguments, rows, _ = resumable
    progress = progress_path(out)
    lines = progress.read_text().splitlines()
    old = [lines[0]] + [
        json.dumps({k: v for k, v in json.loads(line).items() if k != "identity"}) for line in lines[1:]
    ]
    progress.write_text("\n".join(old) + "\n")
    caplog.set_level(logging.INFO, logger="inference")
    assert predict.main(arguments) == 0
    assert sorted(reads) == sorted(rows)
    warnings = [r.getMessage() for r in caplog.records if "without their video's size, time and hash" in r.getMessage()]
    assert warnings == [
        f"{progress}: 3 rows without their video's size, time and hash (an earlier predict wrote them): those "
        "videos are scored again, as one of them may have been replaced since"
    ]
    assert "scored already" not in caplog.text
    assert _labels(out) == pytest.approx({name: row["score"] for name, row in rows.items()}, abs=1.5e-6)


def test_an_unchanged_folder_is_not_read_again(resumable, reads, caplog):
    _, out, arguments, rows, _ = resumable
    assert all(set(row["identity"]) == {"bytes", "mtime_ns", "head_sha256"} for row in rows.values())
    caplog.set_level(logging.INFO, logger="inference")
    assert predict.main(arguments) == 0
    assert reads == [] and "changed since" not in caplog.text and "3 of these scored already" in caplog.text
    assert [d["filename"] for d in _details(out.parent / "details.jsonl")] == sorted(rows)
    assert all("identity" not in d for d in _details(out.parent / "details.jsonl")), "details stay as they were"


def test_identity_changes_names_what_changed(tmp_path):
    from inference.pipeline.file_identity import file_identity

    path = tmp_path / "v.mp4"
    path.write_bytes(b"a" * 10)
    recorded = file_identity(path, head=True)
    assert identity_changes(recorded, path) is None
    path.unlink()
    assert identity_changes(recorded, path).startswith("cannot be read now (No such file or directory")
