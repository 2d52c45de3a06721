"""Make the embedded demo world: a small deepfake dataset in the exact DFDC layout.

    OUT/dfdc_train_part_K/*.mp4 + metadata.json   training parts (REAL clips and their FAKEs)
    OUT/test_videos/*.mp4 + labels.csv            held-out clips, labels.csv = filename,label (1 = fake),group
                                                  (group: real, face_swap or self_blend)
    OUT/demo_world.json                           how every clip was made (sizes, identities, methods)

Real clips animate a face photo with a moving camera, lighting drift, sensor noise and H.264
compression; fakes swap in another identity's face or blend the face onto itself. The faces come
from photos that scikit-image and matplotlib ship, or from --faces DIR. The same seed gives the
same world; an interrupted run picks up where it stopped.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import logging
import os
import shutil
import sys
from dataclasses import asdict
from pathlib import Path

from tqdm import tqdm

from common import cli
from common.cli import InputError
from common.io_utils import write_csv_atomic, write_json_atomic
from common.processes import worker_context
from preprocess.demo_world.identities import Identity, load_identities
from preprocess.demo_world.plan import ClipSpec, plan_world

logger = logging.getLogger("preprocess.make_demo_data")

MANIFEST = "demo_world.json"
FORMAT_VERSION = 1
DEFAULT_VIDEOS = 36
DEFAULT_TEST_VIDEOS = 12


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m preprocess.make_demo_data",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder (created; resumed if it exists)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same world")
    parser.add_argument(
        "--videos",
        type=int,
        default=DEFAULT_VIDEOS,
        help="training videos, about a third REAL and the rest their FAKEs (default %(default)s)",
    )
    parser.add_argument(
        "--test-videos",
        type=int,
        default=None,
        help="held-out test videos, half REAL (default: a third of --videos, at least 2)",
    )
    parser.add_argument(
        "--faces",
        type=Path,
        default=None,
        help="folder of face photos to use instead of the built-in ones; every clear face "
        "of every photo becomes an identity",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="processes rendering clips in parallel (default %(default)s)",
    )
    parser.add_argument("--device", default=None, help="device for MTCNN (default: cuda if present, else cpu)")
    parser.add_argument("--overwrite", action="store_true", help="delete OUT first if it holds another world")
    args = parser.parse_args(argv)
    if args.test_videos is None:
        args.test_videos = max(2, args.videos // 3)
    if args.videos < 1 or args.test_videos < 0:
        parser.error("--videos must be at least 1 and --test-videos at least 0")
    return args


def video_path(out: Path, clip: ClipSpec, name: str) -> Path:
    folder = f"dfdc_train_part_{clip.part}" if clip.split == "train" else "test_videos"
    return out / folder / name


def clip_paths(out: Path, clip: ClipSpec) -> dict[str, Path]:
    return {name: video_path(out, clip, name) for name in clip.names}


def _settings(args: argparse.Namespace, identities: list[Identity]) -> dict:
    return {
        "format_version": FORMAT_VERSION,
        "seed": args.seed,
        "videos": args.videos,
        "test_videos": args.test_videos,
        "identities": [identity.name for identity in identities],
    }


def prepare_output(out: Path, settings: dict, overwrite: bool) -> None:
    manifest = out / MANIFEST
    if manifest.exists():
        previous = json.loads(manifest.read_text()).get("settings")
        if previous == settings:
            return
        if not overwrite:
            raise InputError(
                f"{out} holds a demo world made with other settings ({previous}); "
                "pass --overwrite to replace it or choose another --out"
            )
        shutil.rmtree(out)
    elif out.exists() and any(out.iterdir()) and not overwrite:
        raise InputError(f"{out} exists and is not a demo world; pass --overwrite or choose another --out")
    elif out.exists() and overwrite:
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(manifest, {"settings": settings, "clips": None})


_worker_state: dict = {}


def _init_worker(identities: list[Identity], device: str | None, threads: int) -> None:
    import torch

    from preprocess.demo_world.render import LandmarkTracker

    torch.set_num_threads(threads)
    _worker_state["identities"] = {identity.name: identity for identity in identities}
    _worker_state["tracker"] = LandmarkTracker(device)


def _render(clip: ClipSpec, paths: dict[str, Path]) -> dict:
    from preprocess.demo_world.render import render_clip

    return render_clip(clip, _worker_state["identities"], paths, _worker_state["tracker"])


def render_all(
    clips: list[ClipSpec], out: Path, identities: list[Identity], workers: int, device: str | None
) -> list[dict]:
    for clip in clips:
        for path in clip_paths(out, clip).values():
            path.parent.mkdir(parents=True, exist_ok=True)
    records: list[dict] = []
    progress = tqdm(total=sum(len(clip.names) for clip in clips), desc="demo videos", unit="video")
    if workers <= 1:
        import torch

        # One thread, as each process of a pool has: MTCNN's float sums, and so the fakes' landmarks
        # and bytes, change with the thread count, and the world must not change with --workers
        # (MTCNN's small networks are no faster on more threads either).
        previous = torch.get_num_threads()
        _init_worker(identities, device, threads=1)
        try:
            for clip in clips:
                records.append(_render(clip, clip_paths(out, clip)))
                progress.update(len(clip.names))
        finally:
            torch.set_num_threads(previous)
            _worker_state.clear()
    else:
        context = worker_context("torch", "preprocess.make_demo_data")
        with concurrent.futures.ProcessPoolExecutor(
            workers, mp_context=context, initializer=_init_worker, initargs=(identities, device, 1)
        ) as pool:
            futures = {pool.submit(_render, clip, clip_paths(out, clip)): clip for clip in clips}
            for future in concurrent.futures.as_completed(futures):
                records.append(future.result())
                progress.update(len(futures[future].names))
    progress.close()
    return records


def write_labels(out: Path, clips: list[ClipSpec]) -> None:
    parts: dict[int, dict] = {}
    test_rows = []
    for clip in clips:
        if clip.split == "train":
            entries = parts.setdefault(clip.part, {})
            entries[clip.name] = {"label": "REAL", "split": "train", "original": None}
            for fake in clip.fakes:
                entries[fake.name] = {"label": "FAKE", "split": "train", "original": clip.name, "method": fake.method}
        else:
            test_rows.append({"filename": clip.name, "label": 0, "group": "real"})
            test_rows.extend({"filename": fake.name, "label": 1, "group": fake.method} for fake in clip.fakes)
    for part, entries in parts.items():
        write_json_atomic(out / f"dfdc_train_part_{part}" / "metadata.json", dict(sorted(entries.items())))
    if test_rows:
        write_csv_atomic(
            out / "test_videos" / "labels.csv",
            sorted(test_rows, key=lambda row: row["filename"]),
            ["filename", "label", "group"],
        )


def make_demo_world(args: argparse.Namespace) -> Path:
    identities = load_identities(args.faces, device=args.device)
    logger.info("identities: %s", ", ".join(identity.name for identity in identities))
    settings = _settings(args, identities)
    prepare_output(args.out, settings, args.overwrite)
    clips = plan_world([identity.name for identity in identities], args.videos, args.test_videos, args.seed)
    manifest = json.loads((args.out / MANIFEST).read_text())
    todo = [clip for clip in clips if not all(path.exists() for path in clip_paths(args.out, clip).values())]
    done = len(clips) - len(todo)
    if done:
        logger.info("%d of %d clips already made, %d to go", done, len(clips), len(todo))
    records = {record["name"]: record for record in (manifest.get("clips") or [])}
    for record in render_all(todo, args.out, identities, args.workers, args.device):
        records[record["name"]] = record
    write_labels(args.out, clips)
    clip_records = [dict(records.get(clip.name, {}), spec=asdict(clip)) for clip in clips]
    write_json_atomic(args.out / MANIFEST, {"settings": settings, "clips": clip_records})
    n_train = sum(len(clip.names) for clip in clips if clip.split == "train")
    logger.info(
        "demo world ready in %s: %d training videos in %d parts, %d test videos",
        args.out,
        n_train,
        len({clip.part for clip in clips if clip.split == "train"}),
        sum(len(clip.names) for clip in clips if clip.split == "test"),
    )
    return args.out


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    make_demo_world(parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
