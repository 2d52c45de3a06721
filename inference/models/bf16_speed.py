"""Whether bf16 pays on this CPU: measured once, cached per CPU and library versions.

That a CPU computes bf16 natively (AVX-512 BF16, AMX) does not make the classifiers faster in it:
without AMX the gain depends on the core (an AMD EPYC with AVX-512 BF16 and no AMX classified a
1080p DFDC video in 1.29 s in bf16 against 0.95 in fp32 on one machine, issue 28), and bf16 moves
scores. So fast mode runs bf16 only where it was measured at least `REQUIRED_GAIN` faster: a block
of EfficientNet's kind (1x1 convolutions, a depthwise 3x3 one, SiLU) on a batch of 8, compiled by
OpenVINO in fp32 and in bf16 (the classifiers' runtime on CPUs), each timed in turns, the best of
several runs. It takes about a second, once: the result is kept in
`~/.cache/deepfake-detector/bf16_speed.json` ($DEEPFAKE_DETECTOR_CACHE), keyed by the CPU's model
name, family, model and the flags that matter, and the OpenVINO version; a cache that cannot be
read or written is measured again, with a warning.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import time
from pathlib import Path

import numpy as np

from inference.models.openvino_import import openvino_module
from inference.models.runtime import default_cache_dir

logger = logging.getLogger(__name__)

REQUIRED_GAIN = 0.85  # bf16 runs only where it takes at most this fraction of fp32's time
FLAGS_THAT_MATTER = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "avx512_fp16", "amx_bf16", "amx_tile", "amx_int8")
RUNS = 15  # turns of each precision: the best of them, robust to a busy machine
REVISION = 1  # of the benchmark: a new one measures again


def cpu_identity() -> dict:
    """What decides bf16's speed here: the CPU (model name, family, model, the flags that matter), its
    cores available to this process, and OpenVINO's version."""
    openvino = openvino_module()

    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("model name", "cpu family", "model", "flags") and key not in fields:
                fields[key] = value.strip()
    except OSError:
        pass
    flags = set(fields.pop("flags", "").split())
    return {
        "cpu": fields.get("model name") or platform.processor() or platform.machine(),
        "family": fields.get("cpu family", ""),
        "model": fields.get("model", ""),
        "flags": sorted(flag for flag in FLAGS_THAT_MATTER if flag in flags),
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "openvino": openvino.__version__,
        "revision": REVISION,
    }


def cache_file() -> Path:
    return default_cache_dir().parent / "bf16_speed.json"


def _block_model(channels: int = 48, expanded: int = 192, side: int = 40, blocks: int = 3):
    """An OpenVINO model of `blocks` inverted-residual blocks (EfficientNet's): 1x1 expansion,
    depthwise 3x3, 1x1 projection, SiLU between, on a batch of 8."""
    openvino = openvino_module()
    import openvino.opset13 as ops

    rng = np.random.default_rng(0)

    def weights(*shape):
        return ops.constant((rng.standard_normal(shape) * (2.0 / np.prod(shape[1:])) ** 0.5).astype(np.float32))

    def silu(node):
        return ops.multiply(node, ops.sigmoid(node))

    images = ops.parameter([8, channels, side, side], np.float32, name="images")
    node = images
    for _ in range(blocks):
        wide = silu(ops.convolution(node, weights(expanded, channels, 1, 1), [1, 1], [0, 0], [0, 0], [1, 1]))
        depthwise = weights(expanded, 1, 1, 3, 3)
        wide = silu(ops.group_convolution(wide, depthwise, [1, 1], [1, 1], [1, 1], [1, 1]))
        node = ops.add(node, ops.convolution(wide, weights(channels, expanded, 1, 1), [1, 1], [0, 0], [0, 0], [1, 1]))
    return openvino.Model([node], [images], "bf16_speed")


def measure(threads: int, runs: int = RUNS) -> dict[str, float]:
    """Milliseconds for one batch of `_block_model` in fp32 and in bf16 (the best of `runs`, taken in turns)."""
    openvino = openvino_module()

    core = openvino.Core()
    model = _block_model()
    settings = {"INFERENCE_NUM_THREADS": threads}
    compiled = {
        precision: core.compile_model(model, "CPU", {**settings, "INFERENCE_PRECISION_HINT": precision})
        for precision in ("f32", "bf16")
    }
    batch = np.random.default_rng(1).standard_normal(tuple(model.inputs[0].shape)).astype(np.float32)
    best = {precision: float("inf") for precision in compiled}
    for precision in compiled:
        compiled[precision](batch)  # its first call chooses kernels
    for _ in range(runs):
        for precision, run in compiled.items():
            started = time.perf_counter()
            run(batch)
            best[precision] = min(best[precision], (time.perf_counter() - started) * 1000)
    return {f"{precision}_ms": round(value, 3) for precision, value in best.items()}


def _read_cache(path: Path) -> dict:
    try:
        entries = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        logger.warning("%s: unreadable (%s); bf16's speed is measured again", path, error)
        return {}
    return entries if isinstance(entries, dict) else {}


def measured_speed(threads: int) -> dict:
    """This CPU's measurement (`measure`), from the cache where it was taken before, with
    `bf16_pays`: whether bf16 took at most REQUIRED_GAIN of fp32's time."""
    identity = {**cpu_identity(), "threads": threads}
    key = json.dumps(identity, sort_keys=True)
    path = cache_file()
    entries = _read_cache(path)
    entry = entries.get(key)
    if isinstance(entry, dict) and {"f32_ms", "bf16_ms", "bf16_pays"} <= set(entry):
        return entry
    logger.info("measuring whether bf16 is faster than fp32 on this CPU (once; cached in %s)", path)
    speeds = measure(threads)
    entry = {**identity, **speeds, "bf16_pays": speeds["bf16_ms"] <= REQUIRED_GAIN * speeds["f32_ms"]}
    entries[key] = entry
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
        partial.write_text(json.dumps(entries, indent=1) + "\n")
        os.replace(partial, path)
    except OSError as error:
        logger.warning("%s: cannot keep the measurement (%s); it is taken again next time", path, error)
    return entry
