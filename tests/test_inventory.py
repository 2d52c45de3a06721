"""preprocess.inventory: counts, frame and face sizes, frames without a face, sample grids."""

from __future__ import annotations

import json

import cv2
import numpy as np

from preprocess import inventory


def test_the_inventory_counts_sizes_faces_and_samples(tmp_path, capsys):
    root = tmp_path / "set"
    for label, count, (height, width) in (("real", 3, (48, 64)), ("fake", 2, (120, 90))):
        for index in range(count):
            path = root / label / f"{label}{index}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(path), np.full((height, width, 3), 100, np.uint8))
    (root / "boxes").mkdir()
    (root / "boxes" / "real__real0.json").write_text(json.dumps({"0": [[0, 0, 30, 40], [5, 5, 15, 15]]}))
    (root / "boxes" / "fake__fake0.json").write_text(json.dumps({"0": None}))
    for video in ("real__real0", "fake__fake1"):
        (root / "crops" / video).mkdir(parents=True)
        cv2.imwrite(str(root / "crops" / video / "0_0.png"), np.full((30, 30, 3), 200, np.uint8))
    out = tmp_path / "inventory"
    assert inventory.main(["--root-dir", str(root), "--out", str(out), "--probe", "4"]) == 0
    result = json.loads((out / "inventory.json").read_text())
    assert result["videos"] == 5 and result["photos"] == 5 and result["by_label"] == {"fake": 2, "real": 3}
    assert result["frames_probed"] == 4 and sum(result["frame_heights"].values()) == 4
    assert set(result["frame_heights"]) <= {"48", "120"}
    assert (result["frames_with_face"], result["frames_without_face"]) == (1, 1)
    assert result["face_height_median"] == 25.0, "boxes 40 and 10 px high"
    assert result["crops_by_label"] == {"real": 1, "fake": 1}
    for name in ("resolutions.png", "face_sizes.png", "samples_real.png", "samples_fake.png"):
        assert (out / name).stat().st_size > 0
    assert cv2.imread(str(out / "samples_real.png")).shape == (96, 96, 3), "one crop: one tile"
    printed = capsys.readouterr().out
    assert "5 videos/photos" in printed and "1 of 2 detected frames have one (1 without)" in printed
