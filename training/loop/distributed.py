"""torchrun / DDP plumbing: the device asked for (--device) decides the backend, NCCL on GPUs and
gloo on CPUs; files written by rank 0 only."""

from __future__ import annotations

import logging
import os

import torch
import torch.distributed as dist

from common.cli import InputError

logger = logging.getLogger(__name__)


def choose_device_and_backend(
    requested: str | None,
    cuda_available: bool,
    local_rank: int = 0,
    world_size: int = 1,
    gpu_count: int | None = None,
) -> tuple[torch.device, str]:
    """The device this process runs on and the process group's backend, from `--device` (None:
    CUDA when present): "cpu" -> gloo on the CPU, even on a GPU host; "cuda" -> GPU `local_rank`
    with NCCL; "cuda:N" -> GPU N, for a single process only (torchrun gives each process its GPU)."""
    if requested is None:
        requested = "cuda" if cuda_available else "cpu"
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise InputError(f"--device {requested}: not a device (use cpu, cuda or cuda:N)") from None
    if device.type == "cpu":
        return torch.device("cpu"), "gloo"
    if device.type != "cuda":
        raise InputError(f"--device {requested}: training and prediction run on cpu or cuda only")
    if not cuda_available:
        raise InputError(f"--device {requested}: CUDA is not available here (no GPU, or a CPU-only torch)")
    if device.index is not None and world_size > 1:
        raise InputError(
            f"--device {requested}: under torchrun each of the {world_size} processes takes GPU LOCAL_RANK; "
            "pass --device cuda"
        )
    index = local_rank if device.index is None else device.index
    if gpu_count is not None and index >= gpu_count:
        raise InputError(
            f"--device {requested}: GPU {index} asked for (LOCAL_RANK {local_rank}) but {gpu_count} visible"
        )
    return torch.device("cuda", index), "nccl"


def init_distributed(requested: str | None = None) -> tuple[int, int, torch.device]:
    """(rank, world size, device) from torchrun's environment and `--device` (see
    choose_device_and_backend); a single process otherwise."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    device, backend = choose_device_and_backend(
        requested, cuda, local_rank, world_size, torch.cuda.device_count() if cuda else 0
    )
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return rank, world_size, device


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def is_main_process() -> bool:
    return not is_distributed() or dist.get_rank() == 0


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def all_gather_objects(obj) -> list:
    if not is_distributed():
        return [obj]
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def parameters_checksum(model: torch.nn.Module) -> float:
    with torch.no_grad():
        return float(sum(p.double().sum() + (p.double() ** 2).sum() for p in model.parameters()))


def replicas_in_sync(model: torch.nn.Module) -> bool:
    """True when every rank holds the same weights (checked on a checksum of the parameters)."""
    checksums = all_gather_objects(parameters_checksum(model))
    return all(checksum == checksums[0] for checksum in checksums)


def cleanup() -> None:
    if is_distributed():
        dist.destroy_process_group()
