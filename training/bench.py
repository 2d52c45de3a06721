"""Train one run and print JSON: steps, validation log loss reached, seconds per step.

    python -m training.bench --data-dir work/demo_data [--config configs/demo.yaml] [--fold 0]

The demo figure (docs/demo.md, "The demo figure") comes from this script; any other flag of training.train can be added
after `--` (e.g. `-- --epochs 20`).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from common import cli
from training import train as train_module


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", type=Path, required=True, help="preprocessed dataset root")
    parser.add_argument("--config", type=Path, default=Path("configs/demo.yaml"))
    parser.add_argument("--fold", type=int, default=0)
    parser.add_argument("--seed", type=int, default=111)
    parser.add_argument("extra", nargs="*", help="more training.train flags, after --")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="train_bench_") as output_dir:
        train_args = train_module.parse_args(
            [
                "--config",
                str(args.config),
                "--data-dir",
                str(args.data_dir),
                "--fold",
                str(args.fold),
                "--seed",
                str(args.seed),
                "--output-dir",
                output_dir,
                *args.extra,
            ]
        )
        config = train_module.resolve_config(train_args)
        started = time.time()
        summary = train_module.train(train_args)
        seconds = time.time() - started
        metrics = pd.read_csv(Path(output_dir) / "logs" / summary["run"] / "metrics.csv")
    steps = int(metrics["batches"].sum())
    print(
        json.dumps(
            {
                "config": str(args.config),
                "encoder": config["model"]["encoder"],
                "input_size": config["model"]["input_size"],
                "fold": args.fold,
                "seed": args.seed,
                "device": "cuda" if torch.cuda.is_available() else "cpu",
                "threads": torch.get_num_threads(),
                "steps": steps,
                "epochs": len(metrics),
                "first_val_log_loss": round(float(metrics["score"].iloc[0]), 4),
                "best_val_log_loss": round(summary["best_score"], 4),
                "best_epoch": summary["best_epoch"],
                "final_val_log_loss": round(float(metrics["score"].iloc[-1]), 4),
                "final_val_video_accuracy": round(float(metrics["video_accuracy"].iloc[-1]), 4),
                "seconds": round(seconds, 1),
                "train_seconds_per_step": round(float(metrics["train_seconds"].sum()) / max(1, steps), 3),
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
