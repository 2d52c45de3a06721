"""What a dataset holds, in numbers and pictures: one JSON and a few PNGs.

    python -m preprocess.inventory --root-dir R --out DIR [--layout L] [--samples 16]

Counts of videos (and photos) per label, per source (DFDC part, manipulation method, folder) and
per split; frame sizes (a histogram of heights, of --probe videos at most); and, where preprocessing has run (boxes/,
crops/ under --output-dir, default the root): face sizes (a histogram of box heights, in frame
pixels), frames without a face, crops per label, and a grid of sample crops per label. Writes
DIR/inventory.json, resolutions.png, face_sizes.png and samples_{real,fake}.png, and prints a
summary.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from common import cli
from common.io_utils import atomic_path, write_json_atomic
from common.video_io import VideoReadError, is_image, probe_video
from preprocess.datasets import VideoRecord, load_dataset
from preprocess.outputs import boxes_path, crops_dir, read_boxes

logger = logging.getLogger("preprocess.inventory")

LABELS = {0: "real", 1: "fake"}


def frame_size(record: VideoRecord) -> tuple[int, int] | None:
    """(width, height) of a video or photo (a photo's header only), None where it cannot be read."""
    try:
        if is_image(record.path):
            with Image.open(record.path) as image:
                return image.size
        info = probe_video(record.path)
        return info.width, info.height
    except (OSError, VideoReadError) as error:
        logger.warning("%s: %s", record.path, error)
        return None


def face_statistics(records: list[VideoRecord], output_dir: Path) -> dict:
    """Box heights, frames with and without a face, over the box files preprocessing wrote."""
    heights, with_face, without_face, videos = [], 0, 0, 0
    for record in records:
        path = boxes_path(output_dir, record.video)
        if not path.exists():
            continue
        videos += 1
        for boxes in read_boxes(path).values():
            if boxes:
                with_face += 1
                heights += [box[3] - box[1] for box in boxes]
            else:
                without_face += 1
    return {
        "videos_with_boxes": videos,
        "frames_with_face": with_face,
        "frames_without_face": without_face,
        "face_heights": heights,
    }


def count_crops(records: list[VideoRecord], output_dir: Path) -> dict[str, int]:
    counts: Counter = Counter()
    for record in records:
        folder = crops_dir(output_dir, record.video)
        if folder.is_dir():
            counts[LABELS[record.label]] += sum(1 for _ in folder.glob("*.png"))
    return dict(counts)


def sample_grid(records: list[VideoRecord], output_dir: Path, label: int, count: int, seed: int = 0):
    """Up to `count` crops of `label`, one per video where there are enough videos, as one image."""
    rng = np.random.default_rng(seed)
    folders = [crops_dir(output_dir, r.video) for r in records if r.label == label]
    folders = [f for f in folders if f.is_dir()]
    picks = []
    for index in rng.permutation(len(folders)):
        crops = sorted(folders[index].glob("*.png"))
        if crops:
            picks.append(crops[int(rng.integers(len(crops)))])
        if len(picks) == count:
            break
    tiles = [cv2.resize(image, (96, 96)) for image in (cv2.imread(str(p)) for p in picks) if image is not None]
    if not tiles:
        return None
    columns = min(8, len(tiles))
    rows = -(-len(tiles) // columns)
    grid = np.full((rows * 96, columns * 96, 3), 255, np.uint8)
    for index, tile in enumerate(tiles):
        row, column = divmod(index, columns)
        grid[row * 96 : (row + 1) * 96, column * 96 : (column + 1) * 96] = tile
    return grid


def histogram(values: list[float], title: str, xlabel: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 3), dpi=100)
    axes.hist(values, bins=30, color="#2471a3")
    axes.set(title=title, xlabel=xlabel, ylabel="count")
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png")
    plt.close(figure)


def inventory(records: list[VideoRecord], output_dir: Path, probe: int = 2000) -> tuple[dict, list[int], list[float]]:
    """The counts and statistics, the frame heights (of `probe` videos at most, evenly picked:
    opening a video costs) and the face heights."""
    picks = np.linspace(0, len(records) - 1, min(probe, len(records))).astype(int) if records else []
    probed = [records[i] for i in sorted(set(picks))]
    sizes = [size for size in map(frame_size, probed) if size]
    faces = face_statistics(records, output_dir)
    heights = faces.pop("face_heights")
    result = {
        "videos": len(records),
        "by_label": dict(sorted(Counter(LABELS[r.label] for r in records).items())),
        "by_source": dict(sorted(Counter(r.source for r in records).items())),
        "by_split": dict(sorted(Counter(r.split for r in records if r.split).items())),
        "photos": sum(is_image(r.path) for r in records),
        "frames_probed": len(probed),
        "frame_heights": dict(sorted(Counter(height for _, height in sizes).items())),
        "unreadable": len(probed) - len(sizes),
        **faces,
        "face_height_median": float(np.median(heights)) if heights else None,
        "crops_by_label": count_crops(records, output_dir),
    }
    return result, [height for _, height in sizes], heights


def summary_lines(result: dict) -> list[str]:
    lines = [
        f"{result['videos']} videos/photos: {result['by_label']}; sources {result['by_source']}"
        + (f"; splits {result['by_split']}" if result["by_split"] else ""),
        f"frame heights ({result['frames_probed']} probed): {result['frame_heights']}"
        + (f"; {result['unreadable']} unreadable" if result["unreadable"] else ""),
    ]
    if result["videos_with_boxes"]:
        total = result["frames_with_face"] + result["frames_without_face"]
        lines.append(
            f"faces: {result['frames_with_face']} of {total} detected frames have one "
            f"({result['frames_without_face']} without), median face height {result['face_height_median']:.0f} px; "
            f"crops {result['crops_by_label']}"
        )
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m preprocess.inventory", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--root-dir", type=Path, required=True, help="dataset root")
    parser.add_argument("--output-dir", type=Path, default=None, help="where preprocessing wrote (default: the root)")
    parser.add_argument("--layout", default=None, help="dataset layout (default: detected)")
    parser.add_argument("--out", type=Path, required=True, help="folder for inventory.json and the PNGs")
    parser.add_argument("--samples", type=int, default=16, help="sample crops per label (16)")
    parser.add_argument("--probe", type=int, default=2000, help="videos whose frame size is read, at most (2000)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    records = load_dataset(args.root_dir, args.layout)
    output_dir = args.output_dir or args.root_dir
    result, frame_heights, face_heights = inventory(records, output_dir, args.probe)
    args.out.mkdir(parents=True, exist_ok=True)
    histogram(frame_heights, "Frame heights", "pixels", args.out / "resolutions.png")
    if face_heights:
        histogram(face_heights, "Face box heights", "pixels (in the frame)", args.out / "face_sizes.png")
    for label, name in LABELS.items():
        grid = sample_grid(records, output_dir, label, args.samples)
        if grid is not None:
            with atomic_path(args.out / f"samples_{name}.png") as temporary:
                temporary.write_bytes(cv2.imencode(".png", grid)[1].tobytes())
    write_json_atomic(args.out / "inventory.json", result)
    for line in summary_lines(result):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
