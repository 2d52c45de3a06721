"""A checkpoint whose head is scaled so that its logits on real faces spread over about +-10.

Speed-ups that move face boxes or numbers a little (fast mode's detection, bf16, INT8) must be
checked against a model as confident as a trained one: a trained model's logits reach +-10, and
through the confident strategy a small change in a few frames' scores can move a video's score a
long way. Random weights give every face nearly the same score and the demo's models are soft,
so neither shows that. This builds one (random encoder weights, seeded, or a given checkpoint's),
runs it on the faces of sample videos (found as inference.predict finds them), and rewrites its
last layer so that the logits on those faces have their median at 0 and 90% of them within
+-SPREAD: the encoder's features are untouched, their differences between faces amplified.

    python -m inference.benchmarks.sharp_checkpoint --test-dir DIR --out work/sharp_b2.pth \\
        [--encoder tf_efficientnet_b2_ns --size 380] [--from CKPT] [--spread 10] [--videos 5]

From random weights, the file is written in the original solution's checkpoint format
(`state_dict` with DDP's `module.` prefix, `epoch`, `bce_best`), so scoring it needs `--encoder`
(and `--size`) as the original's files do; from `--from CKPT`, as CKPT was, with the new head.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from pathlib import Path

import numpy as np
import torch

from common import cli
from common.io_utils import atomic_path
from inference.models.ensemble import face_batch, load_member, random_member
from inference.pipeline.faces import NoFaceError, extract_faces, inference_detector
from inference.prediction.predict_folder import list_videos
from preprocess.faces.face_detector import ORIGINAL_SCALE
from training.models.zoo import read_checkpoint

logger = logging.getLogger("inference.benchmarks.sharp_checkpoint")

SPREAD_QUANTILE = 0.9


def sharpened_head(
    weight: torch.Tensor, bias: torch.Tensor, features: torch.Tensor, spread: float, quantile: float = SPREAD_QUANTILE
) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) of a linear head whose logits on `features` (N, C) have median 0 and the
    `quantile` of their absolute values at `spread`: the head's logits shifted and scaled."""
    if not (math.isfinite(spread) and spread > 0) or not 0 < quantile < 1:
        raise ValueError(f"spread must be positive and quantile in (0, 1), got {spread}, {quantile}")
    logits = (features.double() @ weight.double().T + bias.double()).view(-1)
    centred = logits - logits.median()
    reach = float(torch.quantile(centred.abs(), quantile))
    if not reach > 0:
        raise ValueError("every face has the same logit: nothing to spread")
    factor = spread / reach
    return (weight.double() * factor).to(weight.dtype), ((bias.double() - logits.median()) * factor).to(bias.dtype)


def pooled_features(member, crops: list[np.ndarray], batch_size: int = 16) -> torch.Tensor:
    """What the member's head sees for each crop (the input of its last linear layer)."""
    captured = []
    hook = member.model.fc.register_forward_hook(lambda _module, inputs, _output: captured.append(inputs[0]))
    try:
        with torch.no_grad():
            for start in range(0, len(crops), batch_size):
                member.model(face_batch(crops[start : start + batch_size], member))
    finally:
        hook.remove()
    return torch.cat(captured)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m inference.benchmarks.sharp_checkpoint",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--test-dir", type=Path, required=True, help="videos whose faces set the spread")
    parser.add_argument("--out", type=Path, required=True, help="checkpoint to write")
    parser.add_argument("--encoder", default="tf_efficientnet_b2_ns")
    parser.add_argument("--size", type=int, default=380, help="input size (default 380, the recipe's)")
    parser.add_argument("--from", dest="source", type=Path, help="start from this checkpoint (default: random)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights (default 0)")
    parser.add_argument("--spread", type=float, default=10.0, help="logit reached by 90%% of faces (default 10)")
    parser.add_argument("--videos", type=int, default=5, help="videos to take faces from (default 5)")
    args = parser.parse_args(argv)
    if not (math.isfinite(args.spread) and args.spread > 0):
        parser.error(f"--spread must be a positive finite number, got {args.spread}")
    if args.videos < 1:
        parser.error(f"--videos must be 1 or more, got {args.videos}")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    device = torch.device("cpu")
    if args.source:
        member = load_member(args.source, device, args.encoder, args.size)
    else:
        member = random_member(args.encoder, args.size, device, args.seed)
    detector = inference_detector(ORIGINAL_SCALE, device)
    crops = []
    for path in list_videos(args.test_dir)[: args.videos]:
        try:
            crops.extend(extract_faces(path, detector).crops)
        except NoFaceError as error:
            logger.warning("%s", error)
    if not crops:
        raise cli.InputError(f"{args.test_dir}: no face found in the first {args.videos} videos")
    fc = member.model.fc
    weight, bias = sharpened_head(fc.weight.data, fc.bias.data, pooled_features(member, crops), args.spread)
    fc.weight.data.copy_(weight)
    fc.bias.data.copy_(bias)
    if args.source:  # what the source says of itself (encoder, size, normalisation, config) stays
        checkpoint = {**read_checkpoint(args.source), "state_dict": member.model.state_dict()}
    else:
        state = {f"module.{key}": value for key, value in member.model.state_dict().items()}
        checkpoint = {"epoch": 0, "state_dict": state, "bce_best": 0.0}
    with atomic_path(args.out) as partial:
        torch.save(checkpoint, partial)
    logger.info(
        "%s: %s at %d px, logits on %d faces spread to +-%g",
        args.out,
        member.encoder,
        member.input_size,
        len(crops),
        args.spread,
    )
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
