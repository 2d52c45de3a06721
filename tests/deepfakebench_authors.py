"""DeepfakeBench's (SCLBD/DeepfakeBench v1.0.1) crop and models, re-derived for the parity tests of
inference/detectors/deepfakebench*.py from the authors' code, independently of the project's modules:
the frame read and `img_align_crop` (preprocessing/preprocess.py), the test loader's normalisation
(training/dataset/abstract_dataset.py), and functional forwards of their Xception
(training/networks/xception.py) and EfficientNet-B4 (training/networks/efficientnetb4.py on
efficientnet_pytorch 0.7.1) reading state dicts in the authors' key format, which this module also
makes (random weights, their BatchNorm statistics set on a batch so that signals neither vanish
nor explode)."""

from __future__ import annotations

import math
import warnings

import cv2
import numpy as np
import torch
import torch.nn.functional as F

# ---------------------------------------------------------------------------------------------- crops


def authors_frames(path: str, num_frames: int = 32) -> dict[int, np.ndarray]:
    """preprocess.py facecrop: the stated count, linspace(dtype=int), every frame read in turn and
    kept where `cnt_frame in frame_idxs`; {index: BGR frame}."""
    capture = cv2.VideoCapture(str(path))
    frame_count_org = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    frame_idxs = np.linspace(0, frame_count_org - 1, num_frames, endpoint=True, dtype=int)
    kept = {}
    for cnt_frame in range(frame_count_org):
        ret_org, frame_org = capture.read()
        if not ret_org:
            break
        if cnt_frame not in frame_idxs:
            continue
        kept[cnt_frame] = frame_org
    capture.release()
    return kept


def authors_template(outsize=(256, 256), scale=1.3) -> np.ndarray:
    """img_align_crop's dst, line by line."""
    target_size = [112, 112]
    dst = np.array(
        [[30.2946, 51.6963], [65.5318, 51.5014], [48.0252, 71.7366], [33.5493, 92.3655], [62.7299, 92.2041]],
        dtype=np.float32,
    )
    if target_size[1] == 112:
        dst[:, 0] += 8.0
    dst[:, 0] = dst[:, 0] * outsize[0] / target_size[0]
    dst[:, 1] = dst[:, 1] * outsize[1] / target_size[1]
    target_size = outsize
    margin_rate = scale - 1
    x_margin = target_size[0] * margin_rate / 2.0
    y_margin = target_size[1] * margin_rate / 2.0
    dst[:, 0] += x_margin
    dst[:, 1] += y_margin
    dst[:, 0] *= target_size[0] / (target_size[0] + 2 * x_margin)
    dst[:, 1] *= target_size[1] / (target_size[1] + 2 * y_margin)
    return dst


def authors_crop(rgb: np.ndarray, landmark: np.ndarray, outsize=(256, 256), scale=1.3) -> np.ndarray:
    """img_align_crop: skimage's SimilarityTransform().estimate (their call, deprecated in
    scikit-image 0.26), cv2.warpAffine, then the same-size cv2.resize."""
    from skimage import transform as trans

    dst = authors_template(outsize, scale)
    src = landmark.astype(np.float32)
    tform = trans.SimilarityTransform()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        tform.estimate(src, dst)
    M = tform.params[0:2, :]  # noqa: N806 (the authors name)
    img = cv2.warpAffine(rgb, M, (outsize[1], outsize[0]))
    return cv2.resize(img, (outsize[1], outsize[0]))


def authors_loaded(crop_rgb: np.ndarray, folder) -> torch.Tensor:
    """The crop saved as the preprocessing saves it (BGR PNG) and read as the test loader reads it:
    imread, BGR->RGB, cv2.resize(256, INTER_CUBIC), PIL, ToTensor, Normalize(0.5, 0.5)."""
    from PIL import Image
    from torchvision import transforms as T

    path = str(folder / "000.png")
    cv2.imwrite(path, cv2.cvtColor(crop_rgb, cv2.COLOR_RGB2BGR))
    img = cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB)
    img = cv2.resize(img, (256, 256), interpolation=cv2.INTER_CUBIC)
    normalize = T.Compose([T.ToTensor(), T.Normalize(mean=[0.5] * 3, std=[0.5] * 3)])
    return normalize(Image.fromarray(np.array(img, dtype=np.uint8)))


# ------------------------------------------------------------------------------------- state dicts


def _normal(rng: torch.Generator, shape, std: float, mean: float = 0.0) -> torch.Tensor:
    return torch.randn(shape, generator=rng) * std + mean


def _conv(state, key, out_c, in_c, k, rng, bias=False):
    state[key + ".weight"] = _normal(rng, (out_c, in_c, k, k), math.sqrt(2 / (in_c * k * k)))
    if bias:
        state[key + ".bias"] = _normal(rng, (out_c,), 0.1)


def _bn(state, key, channels, rng):
    state[key + ".weight"] = _normal(rng, (channels,), 0.25, 1.0)
    state[key + ".bias"] = _normal(rng, (channels,), 0.1)
    state[key + ".running_mean"] = torch.zeros(channels)
    state[key + ".running_var"] = torch.ones(channels)
    state[key + ".num_batches_tracked"] = torch.tensor(0)


def _linear(state, key, out_f, in_f, rng):
    state[key + ".weight"] = _normal(rng, (out_f, in_f), 1 / math.sqrt(in_f))
    state[key + ".bias"] = _normal(rng, (out_f,), 0.1)


def _bn_op(x, state, key, calibrate):
    mean, var = state[key + ".running_mean"], state[key + ".running_var"]
    if calibrate:  # the batch's statistics become the running ones (momentum 1)
        F.batch_norm(x, mean, var, None, None, True, 1.0, 1e-5)
    eps = 1e-3 if key.startswith("backbone.efficientnet.") else 1e-5  # efficientnet_pytorch: 1e-3
    return F.batch_norm(x, mean, var, state[key + ".weight"], state[key + ".bias"], False, 0.0, eps)


# Xception (xception.py): (in, out, reps, strides, start_with_relu, grow_first) of block1..block12
XCEPTION_BLOCKS = [(64, 128, 2, 2, False, True), (128, 256, 2, 2, True, True), (256, 728, 2, 2, True, True)]
XCEPTION_BLOCKS += [(728, 728, 3, 1, True, True)] * 8 + [(728, 1024, 2, 2, True, False)]


def _xception_block_ops(in_f, out_f, reps, strides, start_with_relu, grow_first):
    """Block.rep's modules in order: ("relu",), ("sep", in, out), ("bn", c), ("pool", stride)."""
    rep, filters = [], in_f
    if grow_first:
        rep += [("relu",), ("sep", in_f, out_f), ("bn", out_f)]
        filters = out_f
    for _ in range(reps - 1):
        rep += [("relu",), ("sep", filters, filters), ("bn", filters)]
    if not grow_first:
        rep += [("relu",), ("sep", in_f, out_f), ("bn", out_f)]
    if not start_with_relu:
        rep = rep[1:]
    if strides != 1:
        rep.append(("pool", strides))
    return rep


def xception_state(rng: torch.Generator) -> dict[str, torch.Tensor]:
    """A random state dict with the keys and shapes of the authors' Xception detector (283 tensors)."""
    s: dict[str, torch.Tensor] = {}
    _conv(s, "backbone.conv1", 32, 3, 3, rng)
    _bn(s, "backbone.bn1", 32, rng)
    _conv(s, "backbone.conv2", 64, 32, 3, rng)
    _bn(s, "backbone.bn2", 64, rng)
    for number, spec in enumerate(XCEPTION_BLOCKS, start=1):
        in_f, out_f, _, strides = spec[:4]
        if out_f != in_f or strides != 1:
            _conv(s, f"backbone.block{number}.skip", out_f, in_f, 1, rng)
            _bn(s, f"backbone.block{number}.skipbn", out_f, rng)
        for index, op in enumerate(_xception_block_ops(*spec)):
            key = f"backbone.block{number}.rep.{index}"
            if op[0] == "sep":
                _conv(s, key + ".conv1", op[1], 1, 3, rng)
                _conv(s, key + ".pointwise", op[2], op[1], 1, rng)
            elif op[0] == "bn":
                _bn(s, key, op[1], rng)
    for name, in_f, out_f in (("conv3", 1024, 1536), ("conv4", 1536, 2048)):
        _conv(s, f"backbone.{name}.conv1", in_f, 1, 3, rng)
        _conv(s, f"backbone.{name}.pointwise", out_f, in_f, 1, rng)
    _bn(s, "backbone.bn3", 1536, rng)
    _bn(s, "backbone.bn4", 2048, rng)
    _linear(s, "backbone.last_linear", 2, 2048, rng)
    _conv(s, "backbone.adjust_channel.0", 512, 2048, 1, rng, bias=True)
    _bn(s, "backbone.adjust_channel.1", 512, rng)
    return s


def _sep(x, s, key, padding):
    x = F.conv2d(x, s[key + ".conv1.weight"], None, 1, padding, 1, x.shape[1])
    return F.conv2d(x, s[key + ".pointwise.weight"])


def xception_logits(s: dict, x: torch.Tensor, calibrate: bool = False) -> torch.Tensor:
    """Xception.forward (features, then classifier: ReLU, average pool, last_linear) in mode original."""
    x = F.relu(_bn_op(F.conv2d(x, s["backbone.conv1.weight"], None, 2, 0), s, "backbone.bn1", calibrate))
    x = F.relu(_bn_op(F.conv2d(x, s["backbone.conv2.weight"]), s, "backbone.bn2", calibrate))
    for number, spec in enumerate(XCEPTION_BLOCKS, start=1):
        inp, y = x, x
        for index, op in enumerate(_xception_block_ops(*spec)):
            key = f"backbone.block{number}.rep.{index}"
            if op[0] == "relu":
                y = F.relu(y)
            elif op[0] == "sep":
                y = _sep(y, s, key, 1)
            elif op[0] == "bn":
                y = _bn_op(y, s, key, calibrate)
            else:
                y = F.max_pool2d(y, 3, op[1], 1)
        if f"backbone.block{number}.skip.weight" in s:
            skip = F.conv2d(inp, s[f"backbone.block{number}.skip.weight"], None, spec[3])
            skip = _bn_op(skip, s, f"backbone.block{number}.skipbn", calibrate)
        else:
            skip = inp
        x = y + skip
    x = F.relu(_bn_op(_sep(x, s, "backbone.conv3", 1), s, "backbone.bn3", calibrate))
    x = _bn_op(_sep(x, s, "backbone.conv4", 1), s, "backbone.bn4", calibrate)
    x = F.adaptive_avg_pool2d(F.relu(x), (1, 1)).flatten(1)
    return F.linear(x, s["backbone.last_linear.weight"], s["backbone.last_linear.bias"])


# efficientnet_pytorch 0.7.1 (utils.py): B4 = width 1.4, depth 1.8, image size 380; the blocks_args strings
B4_BLOCKS_ARGS = [
    "r1_k3_s11_e1_i32_o16_se0.25",
    "r2_k3_s22_e6_i16_o24_se0.25",
    "r2_k5_s22_e6_i24_o40_se0.25",
    "r3_k3_s22_e6_i40_o80_se0.25",
    "r3_k5_s11_e6_i80_o112_se0.25",
    "r4_k5_s22_e6_i112_o192_se0.25",
    "r1_k3_s11_e6_i192_o320_se0.25",
]


def _round_filters(filters, width=1.4, divisor=8):
    filters *= width
    new = max(divisor, int(filters + divisor / 2) // divisor * divisor)
    return int(new + divisor) if new < 0.9 * filters else int(new)


def b4_blocks() -> list[dict]:
    """Every MBConv block of B4 as efficientnet_pytorch builds it: channels, kernel, stride, expansion,
    and the image size its depthwise convolution's static padding is computed for (380 -> 190 after
    the stem; `calculate_output_image_size` after each stride)."""
    blocks, image_size = [], math.ceil(380 / 2)
    for text in B4_BLOCKS_ARGS:
        parts = dict((p[0], p[1:]) if p[:2] != "se" else ("se", p[2:]) for p in text.split("_"))
        repeats = int(math.ceil(1.8 * int(parts["r"])))
        in_f, out_f = _round_filters(int(parts["i"])), _round_filters(int(parts["o"]))
        stride = int(parts["s"][0])
        for repeat in range(repeats):
            blocks.append(
                dict(
                    in_f=in_f if repeat == 0 else out_f,
                    out_f=out_f,
                    kernel=int(parts["k"]),
                    stride=stride if repeat == 0 else 1,
                    expand=int(parts["e"]),
                    image_size=image_size,
                )
            )
            if repeat == 0:
                image_size = math.ceil(image_size / stride)
    return blocks


def static_padding(image_size, kernel, stride):
    """Conv2dStaticSamePadding's ZeroPad2d (left, right, top, bottom) for `image_size`."""
    out = math.ceil(image_size / stride)
    pad = max((out - 1) * stride + (kernel - 1) + 1 - image_size, 0)
    return (pad // 2, pad - pad // 2, pad // 2, pad - pad // 2)


def b4_state(rng: torch.Generator) -> dict[str, torch.Tensor]:
    """A random state dict with the keys and shapes of the authors' EfficientNet-B4 detector (706 tensors)."""
    s: dict[str, torch.Tensor] = {}
    p = "backbone.efficientnet."
    _conv(s, p + "_conv_stem", 48, 3, 3, rng)
    _bn(s, p + "_bn0", 48, rng)
    for index, b in enumerate(b4_blocks()):
        key, hidden = f"{p}_blocks.{index}.", b["in_f"] * b["expand"]
        if b["expand"] != 1:
            _conv(s, key + "_expand_conv", hidden, b["in_f"], 1, rng)
            _bn(s, key + "_bn0", hidden, rng)
        _conv(s, key + "_depthwise_conv", hidden, 1, b["kernel"], rng)
        _bn(s, key + "_bn1", hidden, rng)
        squeezed = max(1, int(b["in_f"] * 0.25))
        _conv(s, key + "_se_reduce", squeezed, hidden, 1, rng, bias=True)
        _conv(s, key + "_se_expand", hidden, squeezed, 1, rng, bias=True)
        _conv(s, key + "_project_conv", b["out_f"], hidden, 1, rng)
        _bn(s, key + "_bn2", b["out_f"], rng)
    _conv(s, p + "_conv_head", 1792, 448, 1, rng)
    _bn(s, p + "_bn1", 1792, rng)
    _linear(s, "backbone.last_layer", 2, 1792, rng)
    return s


def b4_logits(s: dict, x: torch.Tensor, calibrate: bool = False) -> torch.Tensor:
    """EfficientNetB4.forward: the plain stem, extract_features (static paddings), pool, last_layer."""
    p = "backbone.efficientnet."
    x = F.silu(_bn_op(F.conv2d(x, s[p + "_conv_stem.weight"], None, 2, 0), s, p + "_bn0", calibrate))
    for index, b in enumerate(b4_blocks()):
        key, inputs = f"{p}_blocks.{index}.", x
        if b["expand"] != 1:
            x = F.silu(_bn_op(F.conv2d(x, s[key + "_expand_conv.weight"]), s, key + "_bn0", calibrate))
        x = F.pad(x, static_padding(b["image_size"], b["kernel"], b["stride"]))
        x = F.conv2d(x, s[key + "_depthwise_conv.weight"], None, b["stride"], 0, 1, x.shape[1])
        x = F.silu(_bn_op(x, s, key + "_bn1", calibrate))
        squeezed = F.adaptive_avg_pool2d(x, 1)
        squeezed = F.silu(F.conv2d(squeezed, s[key + "_se_reduce.weight"], s[key + "_se_reduce.bias"]))
        x = torch.sigmoid(F.conv2d(squeezed, s[key + "_se_expand.weight"], s[key + "_se_expand.bias"])) * x
        x = _bn_op(F.conv2d(x, s[key + "_project_conv.weight"]), s, key + "_bn2", calibrate)
        if b["stride"] == 1 and b["in_f"] == b["out_f"]:
            x = x + inputs
    x = F.silu(_bn_op(F.conv2d(x, s[p + "_conv_head.weight"]), s, p + "_bn1", calibrate))
    x = F.adaptive_avg_pool2d(x, (1, 1)).flatten(1)
    return F.linear(x, s["backbone.last_layer.weight"], s["backbone.last_layer.bias"])


HEADS = {"xception": "backbone.last_linear", "b4": "backbone.last_layer"}


def varied_batch(size: int, count: int = 6, seed: int = 0) -> torch.Tensor:
    """Noise of a different brightness and contrast in each image, in the normalised range."""
    rng = torch.Generator().manual_seed(seed)
    level = torch.linspace(-0.6, 0.6, count).view(-1, 1, 1, 1)
    contrast = torch.linspace(0.2, 0.9, count).flip(0).view(-1, 1, 1, 1)
    return (level + contrast * torch.randn(count, 3, size, size, generator=rng)).clamp(-1, 1)


def calibrated(state: dict, logits, batch: torch.Tensor, head: str) -> dict:
    """`state` with every BatchNorm's running statistics those of `batch`, and its head scaled and
    shifted so that the logit difference (fake - real) has mean 0 and standard deviation 1.5 over
    `batch`: probabilities spread between about 0.1 and 0.9, neither saturated nor all alike."""
    with torch.no_grad():
        logits(state, batch, calibrate=True)
        difference = logits(state, batch).diff(dim=1).squeeze(1)
        scale = 1.5 / float(difference.std())
        state[head + ".weight"] *= scale
        state[head + ".bias"] *= scale
        state[head + ".bias"][1] -= scale * float(difference.mean())
    return state
