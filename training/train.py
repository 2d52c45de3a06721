"""Train one model of the recipe on one fold with one seed; resumable; single process or torchrun.

    python -m training.train --config configs/b7.yaml --fold 0 --seed 111 --data-dir R
    torchrun --nproc_per_node=8 -m training.train --config configs/b7.yaml --fold 0 --seed 111 --data-dir R

Fine-tune from other weights (a checkpoint of ours, the original release's, or a timm encoder
state dict) as a fresh run with --init-from CKPT; continue an interrupted run with --resume auto.

Writes OUTPUT_DIR/{name}_{fold}_{seed}_best.pt (the weights of the best epoch: the lowest
video-level validation log loss) and _last.pt (the latest epoch with the optimizer, schedule and
random state that --resume needs); --keep-every N also keeps the weights of every Nth epoch as
_{epoch}.pt. Checkpoints carry the encoder, input size and normalisation, so inference needs
nothing else. OUTPUT_DIR/logs/{name}_{fold}_{seed}/ holds config.yaml as resolved, metrics.csv,
TensorBoard events, oof_predictions.csv of the best epoch and summary.json.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel

from common import cli
from common.cli import InputError
from common.io_utils import write_csv_atomic, write_json_atomic
from training.loop.builders import build_model, epoch_length, make_loaders
from training.loop.checkpoints import rng_state, save_checkpoints
from training.loop.distributed import barrier, cleanup, init_distributed, is_main_process, replicas_in_sync
from training.loop.engine import train_one_epoch, validate
from training.loop.schedule import create_optimizer, schedule_lambdas, schedule_mismatch
from training.loop.start_from import data_identity, init_from, resume_training
from training.models.temporal import frame_step
from training.models.zoo import encoder_spec, normalization
from training.settings.config import apply_overrides, load_config, save_config
from training.settings.config_bounds import settings_problem

logger = logging.getLogger("training.train")

FLAG_KEYS = {  # command-line flag -> (config section, key)
    "epochs": ("training", "epochs"),
    "batches_per_epoch": ("training", "batches_per_epoch"),
    "batch_size": ("data", "batch_size"),
    "workers": ("data", "num_workers"),
    "lr": ("optimizer", "lr"),
    "encoder": ("model", "encoder"),
    "pretrained_file": ("model", "pretrained_file"),
    "init_from": ("model", "init_from"),
    "keep_every": ("training", "keep_every"),
    "freeze_epochs": ("training", "freeze_epochs"),
    "allow_degenerate_split": ("data", "allow_degenerate_split"),
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m training.train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", type=Path, required=True, help="model recipe, e.g. configs/b7.yaml")
    parser.add_argument("--data-dir", type=Path, required=True, help="preprocessed dataset root (crops/, ...)")
    parser.add_argument("--folds-csv", type=Path, default=None, help="default: DATA_DIR/folds.csv")
    parser.add_argument("--fold", type=int, default=0, help="validation fold (default 0)")
    parser.add_argument("--seed", type=int, default=111, help="random seed (recipe: 111 555 777 888 999)")
    parser.add_argument("--output-dir", type=Path, default=Path("weights"), help="default: weights/")
    parser.add_argument("--name", default=None, help="run name prefix (default: the config file's name)")
    parser.add_argument(
        "--resume",
        default=None,
        help="continue this run from its _last checkpoint ('auto': OUTPUT_DIR/{run}_last.pt when there); "
        "a checkpoint of another run, fold, config or data is refused",
    )
    parser.add_argument(
        "--init-from",
        metavar="CKPT",
        help="fine-tune: start a fresh run (epoch 0, new optimizer and schedule) from the weights of CKPT, a "
        "checkpoint of ours (frame or temporal), of the original release, or a timm encoder state dict; every "
        "tensor whose name and shape fit is loaded, the head included (override model.init_from)",
    )
    parser.add_argument(
        "--keep-every",
        type=int,
        metavar="N",
        help="also keep the weights of every Nth epoch as {run}_{epoch}.pt (default: only _best and _last)",
    )
    parser.add_argument(
        "--device",
        default=None,
        help="cpu (gloo under torchrun, even on a GPU host), cuda (GPU LOCAL_RANK, NCCL) or cuda:N for a single "
        "process (default: cuda if present)",
    )
    parser.add_argument("--epochs", type=int, help="override training.epochs")
    parser.add_argument("--batches-per-epoch", type=int, help="override training.batches_per_epoch")
    parser.add_argument("--batch-size", type=int, help="override data.batch_size (per process)")
    parser.add_argument("--workers", type=int, help="override data.num_workers")
    parser.add_argument("--lr", type=float, help="override optimizer.lr")
    parser.add_argument("--encoder", help="override model.encoder (a listed encoder or any timm name)")
    parser.add_argument("--pretrained-file", help="override model.pretrained_file (local encoder weights)")
    parser.add_argument("--freeze-epochs", type=int, help="override training.freeze_epochs")
    parser.add_argument(
        "--allow-degenerate-split",
        action="store_true",
        default=None,
        help="train even when the fold's training or validation split has fewer than data.min_class_crops "
        "real or fake crops (normally an error); a split with no crop of a class is refused even so",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override any config value, e.g. --set schedule.name=cosine (repeatable)",
    )
    return parser.parse_args(argv)


def resolve_config(args: argparse.Namespace) -> dict:
    config = load_config(args.config)
    origins = {}  # "section.key" -> the flag or --set that gave its value (the last one wins)
    for flag, (section, key) in FLAG_KEYS.items():
        value = getattr(args, flag)
        if value is not None:
            config[section][key] = value
            origins[f"{section}.{key}"] = "--" + flag.replace("_", "-")
    config = apply_overrides(config, args.set)
    for assignment in args.set:
        dotted = assignment.split("=", 1)[0]
        origins[dotted] = f"--set {dotted}"
    problem = settings_problem(config, origins=origins, source=str(args.config))
    if problem:
        raise InputError(problem)
    return config


def seed_epoch(seed: int, epoch: int, rank: int) -> None:
    torch.manual_seed(seed * 10_000 + epoch * 100 + rank)


@dataclass
class Progress:
    """What carries over from epoch to epoch (and through --resume)."""

    next_epoch: int = 0
    best: float = math.inf
    best_epoch: int = -1
    history: list[dict] = field(default_factory=list)
    plateau: dict = field(default_factory=lambda: {"scale": 1.0, "bad_epochs": 0})

    def record(self, epoch: int, score: float, reduce_on_plateau: dict | None) -> bool:
        """Note the epoch's validation score; cut the lr scale when it stalls. True if best so far."""
        self.next_epoch = epoch + 1
        if score < self.best:
            self.best, self.best_epoch, self.plateau["bad_epochs"] = score, epoch, 0
            return True
        self.plateau["bad_epochs"] += 1
        if reduce_on_plateau and self.plateau["bad_epochs"] % reduce_on_plateau["patience"] == 0:
            self.plateau["scale"] *= reduce_on_plateau["factor"]
            logger.info(
                "validation stalled for %d epochs: lr x%.2f", self.plateau["bad_epochs"], reduce_on_plateau["factor"]
            )
        return False


def write_history(log_dir: Path, history: list[dict]) -> None:
    if history:
        write_csv_atomic(log_dir / "metrics.csv", history, list(history[0]))


def train(args: argparse.Namespace) -> dict:
    config = resolve_config(args)
    rank, world, device = init_distributed(args.device)
    if rank != 0:
        logging.getLogger().setLevel(logging.WARNING)
    run = f"{args.name or args.config.stem}_{args.fold}_{args.seed}"
    log_dir = args.output_dir / "logs" / run
    model_config, training = config["model"], config["training"]
    spec = encoder_spec(model_config["encoder"])
    size = model_config["input_size"] or spec.input_size
    mean, std = normalization(model_config["encoder"])
    if training["deterministic"]:
        torch.use_deterministic_algorithms(True)

    resume = args.output_dir / f"{run}_last.pt" if args.resume == "auto" else args.resume
    resuming = bool(resume) and Path(resume).exists()
    if model_config["init_from"] and args.resume not in (None, "auto"):
        raise InputError(
            "--resume CKPT continues that run, --init-from starts a new one from other weights: give one (with "
            "--resume auto, --init-from starts the run when it has no _last checkpoint yet)"
        )
    if model_config["init_from"] and model_config["pretrained"]:
        logger.info("model.pretrained set to false: the weights come from %s", model_config["init_from"])
        model_config["pretrained"] = False
    torch.manual_seed(args.seed)
    model = build_model(config)
    if model_config["init_from"] and resuming:
        logger.info("%s: resuming %s; --init-from %s started the run", run, resume, model_config["init_from"])
    elif model_config["init_from"]:
        init_from(model, model_config["init_from"], model_config["encoder"])
    if training["sync_bn"] and world > 1 and device.type == "cuda":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(device)
    if training["channels_last"]:
        model.to(memory_format=torch.channels_last)

    folds_csv = args.folds_csv or args.data_dir / "folds.csv"
    train_set, train_loader, val_loader, train_rows = make_loaders(
        config, args.data_dir, folds_csv, args.fold, size, mean, std, world, rank
    )
    length = epoch_length(train_set, config, args.fold, args.seed, world, len(train_rows))
    iterations_per_epoch, crops_per_epoch = length
    mismatch = schedule_mismatch(
        config["schedule"], training["epochs"] * iterations_per_epoch, config["optimizer"]["lr"]
    )
    if mismatch:
        logger.warning("%s: %s", run, mismatch)

    head_params = list(model.head_parameters() if hasattr(model, "head_parameters") else model.fc.parameters())
    head_ids = {id(p) for p in head_params}
    encoder_params = [p for p in model.parameters() if id(p) not in head_ids and p.requires_grad]
    optimizer = create_optimizer([{"params": encoder_params}, {"params": head_params}], config["optimizer"])
    use_fp16 = training["amp"] and device.type == "cuda"
    amp_dtype = (
        torch.float16 if use_fp16 else (torch.bfloat16 if training["cpu_bf16"] and device.type == "cpu" else None)
    )
    scaler = torch.amp.GradScaler(device.type, enabled=use_fp16)

    progress = Progress()
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, schedule_lambdas(config, iterations_per_epoch, progress.plateau)
    )
    if resuming:
        checks = {"run": run, "fold": args.fold, "config": config, "data": data_identity(folds_csv)}
        resume_training(Path(resume), checks, model, optimizer, scheduler, scaler, progress)
    elif args.resume not in (None, "auto"):
        raise InputError(f"--resume {resume}: no such checkpoint")
    elif args.resume == "auto":
        logger.info("%s: no %s yet: a new run", run, resume)
    elif (args.output_dir / f"{run}_last.pt").exists():
        logger.warning(
            "%s: %s is there: this new run replaces its checkpoints and logs (--resume auto continues it)",
            run,
            args.output_dir / f"{run}_last.pt",
        )

    if is_main_process():
        log_dir.mkdir(parents=True, exist_ok=True)
        save_config(config, log_dir / "config.yaml")
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(log_dir))
    net = (
        DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        if world > 1
        else model
    )
    logger.info(
        "%s: %s at %d px on %s x%d, %d train crops per epoch, %d iterations per epoch",
        run,
        model_config["encoder"],
        size,
        device,
        world,
        crops_per_epoch,
        iterations_per_epoch,
    )

    for epoch in range(progress.next_epoch, training["epochs"]):
        seed_epoch(args.seed, epoch, rank)
        train_set.reset(epoch, args.seed)  # the same draw on every rank; each takes its share
        stats = train_one_epoch(
            net,
            train_loader,
            optimizer,
            scheduler,
            scaler,
            device,
            {**training, "clip_grad_norm": config["optimizer"]["clip_grad_norm"]},
            amp_dtype,
            epoch,
            iterations_per_epoch,
            encoder_frozen=epoch < training["freeze_epochs"],
        )
        result = validate(net, val_loader, device, training["channels_last"], amp_dtype)
        score = result["score"]
        improved = progress.record(epoch, score, training["reduce_on_plateau"])
        row = {
            "epoch": epoch,
            **{k: round(v, 6) if isinstance(v, float) else v for k, v in stats.items()},
            **{k: round(v, 6) for k, v in result.items() if k not in {"per_video", "videos"}},
            "val_videos": result["videos"],
            "best": round(progress.best, 6),
        }
        progress.history.append(row)
        if is_main_process():
            state = {
                "encoder": model_config["encoder"],
                "kind": model_config["kind"],
                **(
                    {"temporal": {**config["temporal"], "frame_step": frame_step(train_rows)}}
                    if model_config["kind"] == "temporal"
                    else {}
                ),
                "input_size": size,
                "mean": list(mean),
                "std": list(std),
                "run": run,
                "fold": args.fold,
                "seed": args.seed,
                "epoch": epoch,
                "val_score": score,
                "best_score": progress.best,
                "best_epoch": progress.best_epoch,
                "state_dict": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(),
                "plateau": dict(progress.plateau),
                "history": progress.history,
                "rng": rng_state(),
                "config": config,
                "data": data_identity(folds_csv),
            }
            save_checkpoints(args.output_dir, run, epoch, state, improved, training["keep_every"])
            if improved:
                oof = [
                    {"video": v, "label": int(y), "probability": round(p, 6)}
                    for v, (p, y) in result["per_video"].items()
                ]
                write_csv_atomic(log_dir / "oof_predictions.csv", oof, ["video", "label", "probability"])
            write_history(log_dir, progress.history)
            for key in ("train_loss", "lr"):
                writer.add_scalar(f"train/{key}", stats[key], epoch)
            for key in ("score", "fake_loss", "real_loss", "video_accuracy"):
                writer.add_scalar(f"val/{key}", result[key], epoch)
            logger.info(
                "epoch %d: train loss %.4f, val log loss %.4f (fake %.4f, real %.4f)%s",
                epoch,
                stats["train_loss"],
                score,
                result["fake_loss"],
                result["real_loss"],
                " best" if improved else "",
            )
        barrier()
        patience = training["early_stopping_patience"]
        if patience and epoch - progress.best_epoch >= patience:
            logger.info("no improvement for %d epochs: stopping early", patience)
            break

    in_sync = replicas_in_sync(model)
    summary = {
        "run": run,
        "best_score": progress.best,
        "best_epoch": progress.best_epoch,
        "epochs_run": len(progress.history),
        "world_size": world,
        "replicas_in_sync": in_sync,
    }
    if is_main_process():
        writer.close()
        write_json_atomic(log_dir / "summary.json", summary)
    cleanup()
    if not in_sync:
        raise RuntimeError("DDP replicas ended with different weights")
    return summary


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    train(args)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
