"""Train several configs the same way and print their validation scores side by side (JSON).

    python -m training.compare --data-dir work/demo_data --configs configs/demo.yaml configs/temporal_demo.yaml

Each config is trained on the same fold and seed of the same folds.csv (`--fold`, `--seed`), and
scored the same way: the lowest video-level validation log loss of its run (each validation
video's mean probability over its crops, or its clips for a temporal model; log loss over fakes
and over reals averaged), with the epoch it came at and the seconds the run took. A run that has
finished before (its summary.json is there) is read, not trained again (`--retrain` to redo).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from common import cli
from training import train as train_module
from training.settings.config import load_config


def run_name(config: Path, fold: int, seed: int) -> str:
    return f"{config.stem}_{fold}_{seed}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.compare", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", type=Path, required=True, help="preprocessed dataset root (folds.csv, crops/)")
    parser.add_argument("--configs", type=Path, nargs="+", required=True, help="training configs to compare")
    parser.add_argument("--fold", type=int, default=0, help="validation fold (default 0)")
    parser.add_argument("--seed", type=int, default=111, help="random seed (default 111)")
    parser.add_argument("--output-dir", type=Path, default=Path("weights/compare"), help="default: weights/compare")
    parser.add_argument("--workers", type=int, default=None, help="data loader workers (default: the configs')")
    parser.add_argument("--retrain", action="store_true", help="train again runs that have finished")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    results = []
    for config in args.configs:
        name = run_name(config, args.fold, args.seed)
        summary_path = args.output_dir / "logs" / name / "summary.json"
        seconds = None
        if args.retrain or not summary_path.exists():
            started = time.perf_counter()
            flags = ["--config", str(config), "--data-dir", str(args.data_dir), "--output-dir", str(args.output_dir)]
            flags += ["--fold", str(args.fold), "--seed", str(args.seed)]
            flags += ["--workers", str(args.workers)] if args.workers is not None else []
            train_module.train(train_module.parse_args(flags))
            seconds = round(time.perf_counter() - started, 1)
        summary = json.loads(summary_path.read_text())
        model = load_config(config)["model"]
        results.append(
            {
                "config": str(config),
                "kind": model["kind"],
                "encoder": model["encoder"],
                "run": name,
                "val_log_loss": round(summary["best_score"], 4),
                "best_epoch": summary["best_epoch"],
                "epochs_run": summary["epochs_run"],
                "train_seconds": seconds,
            }
        )
    print(json.dumps({"data_dir": str(args.data_dir), "fold": args.fold, "seed": args.seed, "runs": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
