"""The work of tools/gpu_check.py's steps, each in its own process; each prints one JSON line.

    python tools/gpu_workers.py train   [--device cuda] [--steps 20] [--size 64] [--batch 16]
    torchrun --nproc_per_node=N tools/gpu_workers.py ddp [--steps 4]
    python tools/gpu_workers.py predict --videos DIR --work DIR [--encoder tf_efficientnet_b7_ns --size 380]
    python tools/gpu_workers.py clips   --out DIR [--count 2 --frames 40 --width 1920 --height 1080]

train: `--steps` fp16 steps (GradScaler, autocast) of training/loop/engine.py's loop, with plain SGD and
with SAM, on one batch of a synthetic task (a bright square means fake); reports every step's loss.
ddp: NCCL process group (made even for one process), SyncBatchNorm conversion, DDP fp16 steps,
then training/loop/distributed.py's replica check.
predict: inference.predict on the same videos in fp16 (CUDA's default) and with --fp32; reports
every face's two probabilities.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

SGD = {"name": "sgd", "lr": 0.02, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-4, "sam_rho": 0.05}


def synthetic_batches(count: int, batch: int, size: int, seed: int = 0) -> list[dict]:
    """Noisy grey images; half carry a bright square in the middle and are labelled fake (0.99)."""
    generator = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(count):
        images = torch.randn(batch, 3, size, size, generator=generator) * 0.5
        labels = torch.tensor([[0.01], [0.99]] * (batch // 2))
        images[1::2, :, size // 3 : 2 * size // 3, size // 3 : 2 * size // 3] = 2.0
        batches.append({"image": images, "label": labels, "replaced": [0] * batch})
    return batches


def fp16_losses(optimizer_name: str, device: torch.device, steps: int, size: int, batch: int) -> list[float]:
    """Each step's loss of `steps` training steps of resnet18 from scratch on one batch (its loss must
    fall), through engine.train_one_epoch with a GradScaler and fp16 autocast (on the CPU, for tests:
    fp32, no scaler)."""
    from training.loop.engine import train_one_epoch
    from training.loop.schedule import create_optimizer
    from training.models.zoo import create_model

    torch.manual_seed(0)
    model = create_model("resnet18").to(device).to(memory_format=torch.channels_last)
    optimizer = create_optimizer([{"params": list(model.parameters())}], {**SGD, "name": optimizer_name})
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    cuda = device.type == "cuda"
    scaler = torch.amp.GradScaler(device.type, enabled=cuda)
    amp_dtype = torch.float16 if cuda else None
    settings = {"channels_last": True, "clip_grad_norm": None}
    [one_batch] = synthetic_batches(1, batch, size)
    losses = []
    for step in range(steps):
        stats = train_one_epoch(model, [one_batch], optimizer, scheduler, scaler, device, settings, amp_dtype, step)
        losses.append(stats["train_loss"])
    return losses


def train(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    return {name: fp16_losses(name, device, args.steps, args.size, args.batch) for name in ("sgd", "sam_sgd")}


def ddp(args: argparse.Namespace) -> dict:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from training.loop.distributed import cleanup, init_distributed, is_main_process, replicas_in_sync
    from training.loop.engine import train_one_epoch
    from training.loop.schedule import create_optimizer
    from training.models.zoo import create_model

    rank, world, device = init_distributed(args.device)
    cuda = device.type == "cuda"
    if not dist.is_initialized():  # one process: init_distributed leaves it alone, this check does not
        dist.init_process_group("nccl" if cuda else "gloo")
    backend = dist.get_backend()
    torch.manual_seed(0)
    model = create_model("resnet18")
    if cuda:  # DDP takes SyncBatchNorm on GPU modules only (so does training/train.py)
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(device)
    sync_layers = sum(isinstance(m, torch.nn.SyncBatchNorm) for m in model.modules())
    net = DistributedDataParallel(model, device_ids=[device.index] if cuda else None)
    optimizer = create_optimizer([{"params": list(model.parameters())}], SGD)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    scaler = torch.amp.GradScaler(device.type, enabled=cuda)
    amp_dtype = torch.float16 if cuda else None
    settings = {"channels_last": False, "clip_grad_norm": 1.0}
    losses = []
    for step, one_batch in enumerate(synthetic_batches(args.steps, 8, 64, seed=rank)):  # each rank its own data
        stats = train_one_epoch(net, [one_batch], optimizer, scheduler, scaler, device, settings, amp_dtype, step)
        losses.append(stats["train_loss"])
    in_sync = replicas_in_sync(model)
    result = {
        "world_size": world,
        "backend": backend,
        "sync_batchnorm_layers": sync_layers,
        "replicas_in_sync": in_sync,
        "losses": losses,
    }
    cleanup()
    return result if is_main_process() else {}


def face_photos() -> list[np.ndarray]:
    """scikit-image's astronaut and her mirror image: faces on disk with no download and no
    matplotlib (whose sample photo the demo data also uses), which a wheelhouse for a host without
    internet leaves out."""
    import skimage.data

    astronaut = skimage.data.astronaut()
    return [astronaut, np.ascontiguousarray(astronaut[:, ::-1])]


def write_clips(out: Path, count: int, frames: int, width: int, height: int) -> list[Path]:
    """`count` H.264 clips of a face photo on a grey background, drifting a little from frame to frame."""
    import cv2

    from common.video_io import VideoWriter

    out.mkdir(parents=True, exist_ok=True)
    photos = face_photos()
    paths = []
    for index in range(count):
        face = photos[index % len(photos)]
        side = height // 3
        face = cv2.resize(face, (side * face.shape[1] // face.shape[0], side), interpolation=cv2.INTER_AREA)
        path = out / f"clip{index}.mp4"
        with VideoWriter(path, fps=25, width=width, height=height) as writer:
            for frame_index in range(frames):
                frame = np.full((height, width, 3), 96, np.uint8)
                top, left = height // 3, width // 3 + 2 * frame_index
                frame[top : top + face.shape[0], left : left + face.shape[1]] = face
                writer.write(frame)
        paths.append(path)
    return paths


def clips(args: argparse.Namespace) -> dict:
    paths = write_clips(Path(args.out), args.count, args.frames, args.width, args.height)
    return {"clips": [str(path) for path in paths]}


def predict(args: argparse.Namespace) -> dict:
    """inference.predict in fp16 and in fp32 on the same videos: each face's two probabilities."""
    from inference.prediction import predict_folder as predict_module
    from training.models.zoo import create_model, normalization

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    checkpoint = work / f"random_{args.encoder}.pt"
    mean, std = normalization(args.encoder)
    state = create_model(args.encoder).state_dict()
    torch.save(
        {"encoder": args.encoder, "input_size": args.size, "mean": list(mean), "std": list(std), "state_dict": state},
        checkpoint,
    )
    common = ["--test-dir", args.videos, "--models", str(checkpoint), "--device", args.device, "--runtime", "torch"]
    runs = {}
    for name, extra in (("fp16", []), ("fp32", ["--fp32"])):
        output = work / name / "submission.csv"
        code = predict_module.main([*common, *extra, "--output", str(output)])
        if code != 0:
            return {"error": f"inference.predict ({name}) exited {code}"}
        lines = (output.parent / "details.jsonl").read_text().splitlines()
        runs[name] = {row["filename"]: row for row in map(json.loads, lines)}
    return {
        name: {
            video: {key: row.get(key) for key in ("score", "face_scores", "faces_per_frame", "error")}
            for video, row in rows.items()
        }
        for name, rows in runs.items()
    }


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python tools/gpu_workers.py", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    train_parser = commands.add_parser("train")
    train_parser.add_argument("--device", default="cuda")
    train_parser.add_argument("--steps", type=int, default=20)
    train_parser.add_argument("--size", type=int, default=64)
    train_parser.add_argument("--batch", type=int, default=16)
    ddp_parser = commands.add_parser("ddp")
    ddp_parser.add_argument("--steps", type=int, default=4)
    ddp_parser.add_argument("--device", default="cuda", help="cpu: gloo, one process only (a test of this script)")
    predict_parser = commands.add_parser("predict")
    predict_parser.add_argument("--videos", required=True)
    predict_parser.add_argument("--work", required=True)
    predict_parser.add_argument("--device", default="cuda")
    predict_parser.add_argument("--encoder", default="tf_efficientnet_b7_ns")
    predict_parser.add_argument("--size", type=int, default=380)
    clips_parser = commands.add_parser("clips")
    clips_parser.add_argument("--out", required=True)
    clips_parser.add_argument("--count", type=int, default=2)
    clips_parser.add_argument("--frames", type=int, default=40)
    clips_parser.add_argument("--width", type=int, default=1920)
    clips_parser.add_argument("--height", type=int, default=1080)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    result = {"train": train, "ddp": ddp, "predict": predict, "clips": clips}[args.command](args)
    if result:
        print(json.dumps(result, allow_nan=True))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
