"""Where a member's classifier runs: PyTorch, or OpenVINO on CPUs.

On a CPU, OpenVINO runs the same weights several times faster than eager PyTorch (an
EfficientNet-B2 at 380 px: 34 ms a face against 170 ms on 2 cores) with the same fp32 results
(parity-tested to 1e-4 on the logits). The classifier is exported once through ONNX and cached
by the checkpoint's bytes, its encoder, input size and the library versions, so later runs
compile it from the cache in a second. Only OpenVINO's runtime is used, not its model conversion
tools (which send telemetry).

    torch      the model as loaded (CUDA, or a CPU without OpenVINO)
    openvino   fp32 on the CPU, results as PyTorch's ("exact"); bf16 on request where it is native
    auto       openvino on a CPU where it is installed, else torch
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import timm
import torch

from inference.models.openvino_import import openvino_module

logger = logging.getLogger(__name__)

RUNTIMES = ("auto", "torch", "openvino")


def default_cache_dir() -> Path:
    """$DEEPFAKE_DETECTOR_CACHE/openvino, else ~/.cache/deepfake-detector/openvino ($XDG_CACHE_HOME honoured)."""
    if os.environ.get("DEEPFAKE_DETECTOR_CACHE"):
        return Path(os.environ["DEEPFAKE_DETECTOR_CACHE"]) / "openvino"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "deepfake-detector" / "openvino"


def openvino_available() -> bool:
    return importlib.util.find_spec("openvino") is not None and importlib.util.find_spec("onnxscript") is not None


def native_bf16() -> bool:
    """Whether this CPU computes in bf16 natively (AVX-512 BF16 or AMX). Elsewhere bf16 is emulated
    and slower than fp32."""
    if importlib.util.find_spec("openvino") is not None:
        openvino = openvino_module()

        return "BF16" in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_runtime(name: str, device: torch.device) -> str:
    """The runtime that `name` means on `device`; a clear error when it cannot run there."""
    if name not in RUNTIMES:
        raise ValueError(f"unknown runtime '{name}' (choose one of {', '.join(RUNTIMES)})")
    if name == "auto":
        return "openvino" if device.type == "cpu" and openvino_available() else "torch"
    if name == "openvino" and device.type != "cpu":
        raise ValueError(f"--runtime openvino runs on the CPU only, not on {device}")
    if name == "openvino" and not openvino_available():
        raise ValueError(
            "--runtime openvino needs the openvino and onnxscript packages (pip install -r requirements.txt)"
        )
    return name


def _cache_key(checkpoint: Path, encoder: str, input_size: int) -> str:
    openvino = openvino_module()

    digest = hashlib.sha256()
    with open(checkpoint, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    digest.update(f"{encoder}|{input_size}|timm {timm.__version__}|torch {torch.__version__}".encode())
    digest.update(f"|openvino {openvino.__version__}".encode())
    return f"{encoder}_{input_size}_{digest.hexdigest()[:20]}"


def export_onnx(model: torch.nn.Module, input_size: int, path: Path) -> None:
    """The model with a dynamic batch as ONNX at `path` (written whole or not at all)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.stem}.", suffix=".partial", dir=path.parent))
    chatty = [logging.getLogger(name) for name in ("onnx_ir", "onnxscript", "torch.onnx")]
    levels = [log.level for log in chatty]
    try:
        for log in chatty:
            log.setLevel(logging.WARNING)
        batch = torch.export.Dim("batch", min=1, max=4096)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model.float().eval(),
                (torch.zeros(2, 3, input_size, input_size),),
                str(staging / path.name),
                input_names=["images"],
                output_names=["logits"],
                dynamic_shapes={"x": {0: batch}},
                dynamo=True,
                external_data=False,
                verbose=False,
            )
        os.replace(staging / path.name, path)
    finally:
        for log, level in zip(chatty, levels, strict=True):
            log.setLevel(level)
        shutil.rmtree(staging, ignore_errors=True)


class OpenVinoClassifier:
    """A member's classifier compiled by OpenVINO for the CPU: `pixels` takes the faces as they
    are cut (uint8, N x size x size x 3) and normalises them inside the compiled graph (with the
    member's mean and std: the same input as PyTorch's to float rounding, and 2.3 ms of Python a
    face less, a tenth of a 380 px B2's time on 2 cores); called like the torch model, it takes
    faces normalised already.

    It is compiled for two fixed batch sizes, 8 faces and 1 (the faces left over after the batches
    of 8 go one by one, about as fast per face as in a batch, so nothing is padded): OpenVINO
    re-optimises for every new batch shape, which made each video's first call up to 40% slower.
    """

    batch = 8

    def __init__(
        self,
        model: torch.nn.Module,
        checkpoint: Path,
        encoder: str,
        input_size: int,
        cache_dir: Path,
        precision: str = "f32",
        mean: tuple[float, ...] = (0.0, 0.0, 0.0),
        std: tuple[float, ...] = (1.0, 1.0, 1.0),
    ):
        openvino = openvino_module()

        onnx_path = Path(cache_dir) / f"{_cache_key(Path(checkpoint), encoder, input_size)}.onnx"
        if not onnx_path.exists():
            logger.info("exporting %s for OpenVINO (once; cached in %s)", Path(checkpoint).name, onnx_path.parent)
            export_onnx(model, input_size, onnx_path)
        self._core = openvino.Core()
        self._settings = {"INFERENCE_PRECISION_HINT": precision, "INFERENCE_NUM_THREADS": torch.get_num_threads()}
        self._size, self._mean, self._std = input_size, mean, std
        self.onnx_path = onnx_path
        self._compiled = {batch: self._compile(batch, pixels=True) for batch in (self.batch, 1)}
        self._compiled_normalised: dict = {}

    def _compile(self, batch: int, pixels: bool):
        from openvino import Layout, Type
        from openvino.preprocess import PrePostProcessor

        graph = self._core.read_model(str(self.onnx_path))
        graph.reshape([batch, 3, self._size, self._size])
        if pixels:  # uint8 NHWC in; (x - 255 mean) / (255 std) as the first step of the graph
            steps = PrePostProcessor(graph)
            steps.input().tensor().set_element_type(Type.u8).set_layout(Layout("NHWC"))
            steps.input().model().set_layout(Layout("NCHW"))
            steps.input().preprocess().convert_element_type(Type.f32).mean(
                [255.0 * value for value in self._mean]
            ).scale([255.0 * value for value in self._std])
            graph = steps.build()
        return self._core.compile_model(graph, "CPU", self._settings)

    @classmethod
    def _run(cls, compiled: dict, array: np.ndarray) -> torch.Tensor:
        whole = len(array) - len(array) % cls.batch
        chunks = [array[start : start + cls.batch] for start in range(0, whole, cls.batch)]
        chunks += [array[index : index + 1] for index in range(whole, len(array))]
        logits = [np.asarray(compiled[len(chunk)](chunk)[0]) for chunk in chunks]
        return torch.from_numpy(np.concatenate(logits))

    def pixels(self, faces: np.ndarray) -> torch.Tensor:
        """Logits of uint8 faces (N x size x size x 3, RGB)."""
        return self._run(self._compiled, np.ascontiguousarray(faces, dtype=np.uint8))

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Logits of normalised faces (N x 3 x size x size), by graphs compiled on first use."""
        if not self._compiled_normalised:
            self._compiled_normalised = {batch: self._compile(batch, pixels=False) for batch in (self.batch, 1)}
        array = np.ascontiguousarray(images.detach().cpu().numpy(), dtype=np.float32)
        return self._run(self._compiled_normalised, array)
