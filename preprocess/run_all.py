"""All preprocessing steps in order: detect_faces, extract_crops, landmarks, diffs, folds.

Takes the options every step takes; each step skips what is already done, so running this again
after an interruption (or after adding videos) only does the rest. Per-video failures land in
preprocess_failures.csv and never stop the run.
"""

from __future__ import annotations

import argparse
import sys

from common import cli
from preprocess.datasets import DatasetError, load_dataset
from preprocess.detect_faces import DetectFaces
from preprocess.diffs import Diffs
from preprocess.extract_crops import ExtractCrops
from preprocess.faces.face_detector import scale_argument
from preprocess.folds import make_folds
from preprocess.landmarks import Landmarks
from preprocess.steps import add_common_arguments, load_config, logger, run_step, setup_logging, step_from_args

VIDEO_STEPS = (DetectFaces, ExtractCrops, Landmarks, Diffs)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m preprocess.run_all", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_common_arguments(parser)
    parser.add_argument("--skip-folds", action="store_true", help="stop after diffs (e.g. on one shard of many)")
    parser.add_argument(
        "--scale",
        type=scale_argument,
        default=None,
        help="MTCNN scale of detect_faces: a number, or 'rule' to scale by resolution (config: 0.5, the original's)",
    )
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    try:
        records, config = load_dataset(args.root_dir, args.layout), load_config(args.config)
        steps = [step_from_args(step_class, args, records, config) for step_class in VIDEO_STEPS]
        for step in steps:
            step.override("detection", scale=args.scale)
    except DatasetError as error:
        return cli.fail(error)
    failed = 0
    for step in steps:
        failed += run_step(step, args.workers, args.shard).get("failed", 0)
    if not args.skip_folds:
        output_dir = args.output_dir or args.root_dir
        make_folds(output_dir, output_dir / "folds.csv", steps[0].records, steps[0].config["folds"])
    logger.info("preprocessing finished: %d step failures (see preprocess_failures.csv)", failed)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
