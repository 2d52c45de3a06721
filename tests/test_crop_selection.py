"""Which crops a run uses (the original's subset in b7/b5) and per-video draws each epoch (SBI)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import chisquare

from tests.training_data import make_crop_dataset
from training.data.dataset import CropDataset, draw_per_video, read_folds, sample_epoch, select_crops


def _dfdc_like_rows() -> pd.DataFrame:
    """Crops of every 10th frame up to 400, three faces each, of: an original with two fakes, an
    original without fakes, and a fake whose original is missing (its own landmark source)."""
    videos = [
        ("ori", 0, "ori"),
        ("fake1", 1, "ori"),
        ("fake2", 1, "ori"),
        ("lonely", 0, "lonely"),
        ("orphan", 1, "orphan"),
    ]
    rows = [
        {"video": video, "file": f"{frame}_{face}.png", "label": label, "original": original, "frame": frame, "fold": 0}
        for video, label, original in videos
        for frame in range(0, 401, 10)
        for face in range(3)
    ]
    return pd.DataFrame(rows)


def test_the_originals_subset_frames_below_320_two_faces_reals_with_fakes():
    rows = _dfdc_like_rows()
    kept = select_crops(rows, frame_limit=320, faces_per_frame=2, paired_only=True)
    assert set(kept["video"]) == {"ori", "fake1", "fake2"}
    assert sorted(set(kept["frame"])) == list(range(0, 320, 10))
    assert set(kept["file"].str.split("_").str[1]) == {"0.png", "1.png"}
    assert len(kept) == 3 * 32 * 2
    assert select_crops(rows).equals(rows), "nothing set: every crop"
    assert len(select_crops(rows, faces_per_frame=1)) == 5 * 41


def test_at_most_n_crops_of_each_video_drawn_afresh():
    rows = _dfdc_like_rows()
    first = draw_per_video(rows, 8, np.random.default_rng([1, 0]))
    assert first.groupby("video").size().to_dict() == dict.fromkeys(["ori", "fake1", "fake2", "lonely", "orphan"], 8)
    again = draw_per_video(rows, 8, np.random.default_rng([1, 0]))
    other = draw_per_video(rows, 8, np.random.default_rng([1, 1]))
    assert first.equals(again) and not first.equals(other)
    few = rows[rows["video"] == "ori"].head(5)
    assert len(draw_per_video(few, 8, np.random.default_rng(0))) == 5
    # every crop of a video is as likely to be drawn
    ori = rows[rows["video"] == "ori"]
    drawn = pd.concat([draw_per_video(ori, 8, np.random.default_rng([2, k])) for k in range(300)])
    counts = drawn["file"].value_counts().reindex(ori["file"], fill_value=0)
    assert counts.sum() == 300 * 8 and counts.min() > 0
    assert chisquare(counts).pvalue > 0.01, "uniform over the video's crops"


def test_an_epoch_with_frames_per_video_balances_reals_and_fakes_over_videos():
    rows = _dfdc_like_rows()
    epoch = sample_epoch(rows, epoch=0, seed=5, frames_per_video=4)
    reals = epoch[epoch["label"] == 0]
    assert reals.groupby("video").size().to_dict() == {"ori": 4, "lonely": 4}
    assert (epoch["label"] == 1).sum() == 8


def test_blend_pairs_draw_per_video_too(tmp_path):
    make_crop_dataset(tmp_path, groups=4, fakes_per_group=1, crops=12)
    rows = read_folds(tmp_path / "folds.csv")
    dataset = CropDataset(tmp_path, rows, True, 32, (0.5,) * 3, (0.5,) * 3, fakes="blends", frames_per_video=3)
    dataset.reset(0, 7)
    assert dataset.samples.groupby("video").size().to_dict() == {f"real{g}": 3 for g in range(4)}
    first = set(dataset.samples["file"] + dataset.samples["video"])
    dataset.reset(1, 7)
    assert set(dataset.samples["file"] + dataset.samples["video"]) != first
