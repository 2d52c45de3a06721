"""DDP plumbing: --device picks the device and the backend (gloo for CPU runs even on a GPU host),
and the replica check tells equal weights from different ones across real processes."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from common.cli import InputError
from training.loop import distributed
from training.loop.distributed import choose_device_and_backend, parameters_checksum, replicas_in_sync


@pytest.mark.parametrize(
    ("requested", "local_rank", "world_size", "expected"),
    [
        (None, 1, 2, ("cuda:1", "nccl")),  # the default on a GPU host: the process's own GPU
        ("cuda", 3, 4, ("cuda:3", "nccl")),
        ("cpu", 1, 2, ("cpu", "gloo")),  # the gloo tests of predict and train, on a GPU host
        ("cpu", 0, 1, ("cpu", "gloo")),
        ("cuda:1", 0, 1, ("cuda:1", "nccl")),  # one process on the GPU it names
    ],
)
def test_a_gpu_host_runs_where_device_says(requested, local_rank, world_size, expected):
    device, backend = choose_device_and_backend(requested, True, local_rank, world_size, gpu_count=4)
    assert (str(device), backend) == expected


def test_without_cuda_the_default_is_the_cpu_and_asking_for_cuda_is_an_error():
    assert choose_device_and_backend(None, False, 1, 2) == (torch.device("cpu"), "gloo")
    for requested in ("cuda", "cuda:0"):
        with pytest.raises(InputError, match=rf"--device {requested}: CUDA is not available here"):
            choose_device_and_backend(requested, False)


def test_devices_that_cannot_work_are_refused_with_the_reason():
    with pytest.raises(InputError, match="each of the 2 processes takes GPU LOCAL_RANK; pass --device cuda"):
        choose_device_and_backend("cuda:0", True, 1, 2, gpu_count=2)
    with pytest.raises(InputError, match=r"GPU 2 asked for \(LOCAL_RANK 2\) but 2 visible"):
        choose_device_and_backend("cuda", True, 2, 3, gpu_count=2)
    with pytest.raises(InputError, match="--device gpu0: not a device"):
        choose_device_and_backend("gpu0", True)
    with pytest.raises(InputError, match="--device meta: training and prediction run on cpu or cuda only"):
        choose_device_and_backend("meta", True)


def test_init_distributed_with_device_cpu_uses_gloo_and_leaves_the_gpu_alone(monkeypatch):
    """A GPU host simulated: CUDA present, torchrun's environment for rank 1 of 2."""
    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: calls.append(("set_device", str(device))))
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda backend: calls.append(("backend", backend)))
    for name, value in {"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1"}.items():
        monkeypatch.setenv(name, value)
    assert distributed.init_distributed("cpu") == (1, 2, torch.device("cpu"))
    assert calls == [("backend", "gloo")]
    calls.clear()
    assert distributed.init_distributed(None) == (1, 2, torch.device("cuda", 1))
    assert calls == [("set_device", "cuda:1"), ("backend", "nccl")]


def _replica_check(rank: int, init_file: str, results) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        for differ in (False, True):
            torch.manual_seed(0)
            model = torch.nn.Linear(3, 2)
            if differ and rank == 1:
                with torch.no_grad():
                    model.bias[0] += 1e-6  # one weight, a little: the checksum must still tell
            results[(differ, rank)] = replicas_in_sync(model)
    finally:
        dist.destroy_process_group()


def test_replicas_in_sync_compares_the_ranks_weights(tmp_path):
    """Equal weights, then one weight different, in one pair of processes (each start imports torch)."""
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_replica_check, args=(str(tmp_path / "init"), results), nprocs=2, join=True)
        assert dict(results) == {(False, 0): True, (False, 1): True, (True, 0): False, (True, 1): False}


def test_the_checksum_tells_weights_of_the_same_sum_apart():
    model = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 2.0]]))
        before = parameters_checksum(model)
        model.weight.copy_(torch.tensor([[1.5, 1.5]]))
    assert parameters_checksum(model) != before


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is here: --device cuda is no error")
def test_predict_and_train_say_in_one_line_that_cuda_is_missing(tmp_path, capsys):
    from common import cli
    from inference.prediction import predict_folder as predict
    from tests.conftest import REPO_ROOT
    from training import train

    commands = {
        predict.main: [
            "--test-dir",
            str(tmp_path),
            "--models",
            str(tmp_path / "m.pt"),
            "--output",
            str(tmp_path / "s.csv"),
        ],
        train.main: ["--config", str(REPO_ROOT / "configs" / "demo.yaml"), "--data-dir", str(tmp_path)],
    }
    for main, argv in commands.items():
        assert cli.run(main, [*argv, "--device", "cuda"]) == 2
        [line] = capsys.readouterr().err.strip().splitlines()[-1:]
        assert line.startswith("error: --device cuda: CUDA is not available here"), line
