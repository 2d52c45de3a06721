"""Dataset adapters: DFDC metadata into records, and clear errors for malformed metadata."""

from __future__ import annotations

import json

import pytest

from preprocess.datasets import FAKE, REAL, DatasetError, load_dataset, summarize
from tests.conftest import shared_data


def _part(root, number, metadata, files=None):
    part = root / f"dfdc_train_part_{number}"
    part.mkdir(parents=True)
    (part / "metadata.json").write_text(metadata if isinstance(metadata, str) else json.dumps(metadata))
    for name in files if files is not None else (metadata if isinstance(metadata, dict) else {}):
        (part / name).write_bytes(b"\0")
    return part


def test_dfdc_records_link_fakes_to_originals(tmp_path):
    _part(
        tmp_path,
        0,
        {
            "a.mp4": {"label": "REAL", "split": "train", "original": None},
            "b.mp4": {"label": "FAKE", "split": "train", "original": "a.mp4"},
        },
    )
    _part(tmp_path, 7, {"c.mp4": {"label": "FAKE", "split": "train", "original": "gone.mp4"}})
    records = {record.video: record for record in load_dataset(tmp_path)}
    assert records["a"].label == REAL and records["a"].group == "a" and records["a"].original is None
    assert records["b"].label == FAKE and records["b"].original == "a" and records["b"].group == "a"
    assert records["c"].source == "dfdc_train_part_7" and records["c"].group == "gone"
    summary = summarize(list(records.values()))
    assert summary["fakes_without_original"] == 1 and summary["missing_originals"] == ["gone"]


def test_listed_but_absent_videos_are_skipped(tmp_path):
    _part(tmp_path, 0, {"a.mp4": {"label": "REAL"}, "b.mp4": {"label": "FAKE", "original": "a.mp4"}}, files=["a.mp4"])
    assert [record.video for record in load_dataset(tmp_path)] == ["a"]


@pytest.mark.parametrize(
    "metadata,expected",
    [
        ("{not json", "not readable JSON"),
        ({"a.mp4": {"label": "MAYBE"}}, "entry 'a.mp4': label must be REAL or FAKE"),
        ({"a.mp4": {"label": "FAKE"}}, "entry 'a.mp4': a FAKE needs its original"),
        ({"../escape.mp4": {"label": "REAL"}}, "entry '../escape.mp4' is not a plain file name"),
        ({"/etc/passwd": {"label": "REAL"}}, "entry '/etc/passwd' is not a plain file name"),
        ({"a.mp4": {"label": "FAKE", "original": "../../x.mp4"}}, "entry '../../x.mp4' is not a plain"),
    ],
)
def test_malformed_metadata_names_the_file_and_the_entry(tmp_path, metadata, expected):
    part = _part(tmp_path, 0, metadata, files=[])
    with pytest.raises(DatasetError, match=expected) as error:
        load_dataset(tmp_path)
    assert str(part / "metadata.json") in str(error.value)


def test_a_folder_of_another_layout_is_refused(tmp_path):
    (tmp_path / "videos").mkdir()
    with pytest.raises(DatasetError, match="layout not recognised"):
        load_dataset(tmp_path)


def test_demo_world_reads_as_dfdc(demo_world):
    records = load_dataset(demo_world)
    assert len(records) == 6 and sum(r.is_fake for r in records) == 4
    ids = {record.video for record in records}
    assert all(record.original in ids for record in records if record.is_fake)


@pytest.mark.shared_data
def test_dfdc_mini_sample():
    records = {record.video: record for record in load_dataset(shared_data("dfdc_mini"))}
    assert set(records) == {"004", "004_982", "634", "634_660", "yhffcuhhjy"}
    assert records["004_982"].original == "004" and records["634_660"].group == "634"
    assert records["yhffcuhhjy"].original == "wdpsifpppf" and records["yhffcuhhjy"].source == "dfdc_train_part_10"
