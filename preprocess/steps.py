"""What every preprocessing step shares: command line, config, sharding, workers, resuming,
the failures file and the summary line.

A step is a `VideoStep`: it says which videos it handles, whether a video is already done, and
how to process one video. `run_step` does the rest: it skips finished videos, spreads the others
over worker processes, records each failure in the failures file without stopping, and logs one
summary line. Outputs are written under temporary names and renamed, so a killed run leaves
nothing half-written behind and the next run picks up where it stopped.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import copy
import csv
import logging
import os
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import yaml
from tqdm import tqdm

from common import cli, safe_yaml
from common.cli import InputError
from common.io_utils import recover_atomic_dirs, write_csv_atomic
from common.processes import worker_context
from preprocess.datasets import LAYOUTS, DatasetError, VideoRecord, load_dataset

logger = logging.getLogger("preprocess")

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "preprocess.yaml"
FAILURE_FIELDS = ["video", "step", "reason"]


def _merge(defaults: dict, given: dict, path: Path) -> dict:
    merged = dict(defaults)
    for key, value in given.items():
        if key not in defaults:
            raise InputError(f"{path}: unknown preprocessing setting '{key}' (known: {', '.join(sorted(defaults))})")
        merged[key] = _merge(defaults[key], value, path) if isinstance(defaults[key], dict) else value
    return merged


def load_config(path: str | os.PathLike | None = None) -> dict:
    """The recipe's settings (configs/preprocess.yaml), with those of `path` over them."""

    def read(file: Path) -> dict:
        try:
            loaded = safe_yaml.safe_load(file.read_text()) or {}
        except (OSError, yaml.YAMLError) as error:
            raise InputError(f"{file}: cannot read the preprocessing config ({error})") from error
        if not isinstance(loaded, dict):
            raise InputError(f"{file}: expected a mapping of settings")
        return loaded

    defaults = read(DEFAULT_CONFIG)
    return defaults if path is None else _merge(defaults, read(Path(path)), Path(path))


def parse_shard(text: str) -> tuple[int, int]:
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"--shard takes i/n, e.g. 0/4; got '{text}'") from error
    if count < 1 or not 0 <= index < count:
        raise argparse.ArgumentTypeError(f"--shard i/n needs 0 <= i < n; got '{text}'")
    return index, count


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("common to every preprocessing step")
    group.add_argument("--root-dir", type=Path, required=True, help="dataset root")
    group.add_argument("--output-dir", type=Path, default=None, help="where outputs go (default: the root dir)")
    group.add_argument("--layout", choices=sorted(LAYOUTS), default=None, help="dataset layout (default: detected)")
    group.add_argument("--config", type=Path, default=None, help=f"settings (default: {DEFAULT_CONFIG.name})")
    group.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes (default: 1); their threads share the cores this process may use "
        "(OMP_NUM_THREADS threads, where it is set)",
    )
    group.add_argument(
        "--shard",
        type=parse_shard,
        default=(0, 1),
        metavar="I/N",
        help="process only the I-th of N equal shares of the videos (0 <= I < N), so that "
        "N machines can split the work",
    )
    group.add_argument("--device", default=None, help="torch device for MTCNN (default: cuda if present, else cpu)")
    group.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def shard_records(records: list[VideoRecord], shard: tuple[int, int]) -> list[VideoRecord]:
    index, count = shard
    return sorted(records, key=lambda record: record.video)[index::count]


def failures_path(output_dir: Path, shard: tuple[int, int]) -> Path:
    index, count = shard
    suffix = "" if count == 1 else f".shard-{index}-of-{count}"
    return output_dir / f"preprocess_failures{suffix}.csv"


def update_failures(path: Path, step: str, processed: set[str], failures: list[dict]) -> None:
    """Replace this step's rows for the videos just processed by the new failures, keep the rest."""
    rows: list[dict] = []
    if path.exists():
        with open(path, newline="") as handle:
            rows = [r for r in csv.DictReader(handle) if not (r["step"] == step and r["video"] in processed)]
    rows.extend(failures)
    if rows or path.exists():
        write_csv_atomic(path, sorted(rows, key=lambda r: (r["step"], r["video"])), FAILURE_FIELDS)


@dataclass(frozen=True)
class Option:
    """A command-line flag of a step that overrides `config[section][key]`."""

    flag: str
    section: str
    key: str
    type: type
    help: str
    nargs: int | None = None
    metavar: str | tuple[str, ...] | None = None


@dataclass
class VideoStep:
    """One preprocessing step over videos. Subclasses set `name` and implement the three methods."""

    output_dir: Path
    records: list[VideoRecord]
    config: dict
    device: str | None = None
    name: str = field(default="step", init=False)
    options: ClassVar[tuple[Option, ...]] = ()

    def __post_init__(self) -> None:
        self.by_id = {record.video: record for record in self.records}

    def override(self, section: str, **values) -> None:
        """Command-line values (None = not given) over the config's `section`."""
        self.config.setdefault(section, {}).update({k: v for k, v in values.items() if v is not None})

    def box_source(self, record: VideoRecord) -> VideoRecord:
        """The video whose face boxes `record` is cropped with: its original when present."""
        if record.is_fake and record.original in self.by_id:
            return self.by_id[record.original]
        return record

    def is_box_source(self, record: VideoRecord) -> bool:
        return self.box_source(record) is record

    def selects(self, record: VideoRecord) -> bool:
        raise NotImplementedError

    def is_done(self, record: VideoRecord) -> bool:
        raise NotImplementedError

    def process(self, record: VideoRecord) -> dict:
        """Make this video's outputs; return counts to add up in the summary. Raise on failure."""
        raise NotImplementedError

    def output_folders(self, record: VideoRecord) -> list[Path]:
        """The folders `process` writes whole with atomic_dir (what a killed run left of them is put
        right before the next run looks at what is done)."""
        return []

    def prepare_worker(self) -> None:
        """Load models once per process (called in each worker before its first video)."""


_worker_step: VideoStep | None = None


def _init_worker(step: VideoStep, threads: int) -> None:
    import torch

    global _worker_step
    torch.set_num_threads(threads)
    _worker_step = step
    step.prepare_worker()


def _process_one(record: VideoRecord) -> tuple[str, dict | None, str | None]:
    try:
        return record.video, _worker_step.process(record), None
    except Exception as error:  # one broken video must never stop the run
        logger.debug("%s: %s failed\n%s", record.video, _worker_step.name, traceback.format_exc())
        return record.video, None, f"{type(error).__name__}: {error}"


def threads_per_worker(workers: int) -> int:
    """Torch threads for each of a step's `workers`: the cores this process may use (its CPU
    affinity), or OMP_NUM_THREADS where that is set to a whole number, shared out between them."""
    try:
        cores = int(os.environ.get("OMP_NUM_THREADS", ""))
    except ValueError:
        cores = 0
    if cores < 1:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(1, workers))


def run_step(step: VideoStep, workers: int = 1, shard: tuple[int, int] = (0, 1)) -> dict:
    """Run `step` over its videos of this shard; returns the summary counts."""
    selected = shard_records([r for r in step.records if step.selects(r)], shard)
    recover_atomic_dirs(folder for record in selected for folder in step.output_folders(record))
    todo = [record for record in selected if not step.is_done(record)]
    counts: Counter = Counter(videos=len(selected), skipped=len(selected) - len(todo))
    failures: list[dict] = []
    threads = threads_per_worker(workers)
    progress = tqdm(total=len(todo), desc=step.name, unit="video", disable=not todo)

    def collect(video: str, stats: dict | None, reason: str | None) -> None:
        if reason is None:
            counts["done"] += 1
            counts.update(stats or {})
        else:
            counts["failed"] += 1
            failures.append({"video": video, "step": step.name, "reason": reason})
            logger.warning("%s: %s failed: %s", video, step.name, reason)
        progress.update()

    if todo and workers <= 1:
        _init_worker(step, threads)
        for record in todo:
            collect(*_process_one(record))
    elif todo:
        context = worker_context("torch", type(step).__module__)
        with concurrent.futures.ProcessPoolExecutor(
            workers, mp_context=context, initializer=_init_worker, initargs=(step, threads)
        ) as pool:
            for future in concurrent.futures.as_completed([pool.submit(_process_one, r) for r in todo]):
                collect(*future.result())
    progress.close()
    update_failures(failures_path(step.output_dir, shard), step.name, {r.video for r in todo}, failures)
    extras = ", ".join(
        f"{value} {key}" for key, value in counts.items() if key not in {"videos", "done", "skipped", "failed"}
    )
    logger.info(
        "%s: %d videos: %d done, %d skipped (already done), %d failed%s",
        step.name,
        counts["videos"],
        counts["done"],
        counts["skipped"],
        counts["failed"],
        f"; {extras}" if extras else "",
    )
    return dict(counts)


def step_main(step_class: type[VideoStep], description: str, argv: list[str] | None = None) -> int:
    """The command line of a video step: common options, the step's own, then the run."""
    parser = argparse.ArgumentParser(
        prog=f"python -m preprocess.{step_class.name}",
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common_arguments(parser)
    for option in step_class.options:
        parser.add_argument(
            option.flag, dest=option.key, type=option.type, nargs=option.nargs, metavar=option.metavar, help=option.help
        )
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    try:
        step = step_from_args(step_class, args)
    except DatasetError as error:
        return cli.fail(error)
    for option in step_class.options:
        step.override(option.section, **{option.key: getattr(args, option.key)})
    run_step(step, args.workers, args.shard)
    return 0


def step_from_args(
    step_class: type[VideoStep],
    args: argparse.Namespace,
    records: list[VideoRecord] | None = None,
    config: dict | None = None,
) -> VideoStep:
    records = load_dataset(args.root_dir, args.layout) if records is None else records
    output_dir = args.output_dir or args.root_dir
    config = load_config(args.config) if config is None else copy.deepcopy(config)
    return step_class(output_dir=output_dir, records=records, config=config, device=args.device)
