"""Self-Blended Images' inference (mapooon/SelfBlendedImages @ 9fe4efe, src/inference/) re-derived
step for step from their code, for the tests to hold inference/detectors/sbi*.py to: their frame
loop, RetinaFace's box output rule, their crop_face, their EfficientNet-B4 (efficientnet_pytorch
0.7.1) as plain functional arithmetic on a state dict in their key names, their scoring. Written
from their code and efficientnet_pytorch's, not from the project's modules."""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch
import torch.nn.functional as F

# efficientnet_pytorch utils.py: B4 = (width 1.4, depth 1.8, 380 px, dropout 0.4), batch-norm eps 1e-3
WIDTH, DEPTH, IMAGE_SIZE, BN_EPS = 1.4, 1.8, 380, 1e-3
# its BlockDecoder strings for every EfficientNet: repeats, kernel, stride, expand ratio, in, out (SE 0.25)
BASE_BLOCKS = [(1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80)]
BASE_BLOCKS += [(3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320)]


def round_filters(filters: int) -> int:
    """utils.py round_filters (divisor 8, no min_depth)."""
    filters *= WIDTH
    new = max(8, int(filters + 4) // 8 * 8)
    return int(new + 8 if new < 0.9 * filters else new)


def b4_blocks() -> list[dict]:
    """The 32 blocks of efficientnet-b4 in order: kernel, stride, expand ratio, in, out, SE width."""
    blocks = []
    for repeats, kernel, stride, expand, inp, out in BASE_BLOCKS:
        inp, out = round_filters(inp), round_filters(out)
        for repeat in range(int(math.ceil(DEPTH * repeats))):
            first = repeat == 0
            squeeze = max(1, int((inp if first else out) * 0.25))
            blocks.append(
                {"kernel": kernel, "stride": stride if first else 1, "expand": expand, "in": inp if first else out}
                | {"out": out, "squeeze": squeeze}
            )
    return blocks


def authors_shapes() -> dict[str, tuple[int, ...]]:
    """Every tensor of their checkpoint's ["model"] (`net.` + efficientnet_pytorch's names) and its shape."""
    shapes: dict[str, tuple[int, ...]] = {}

    def bn(name: str, channels: int) -> None:
        for part in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{name}.{part}"] = (channels,)
        shapes[f"{name}.num_batches_tracked"] = ()

    stem, head = round_filters(32), round_filters(1280)
    shapes["net._conv_stem.weight"] = (stem, 3, 3, 3)
    bn("net._bn0", stem)
    for number, block in enumerate(b4_blocks()):
        name, wide = f"net._blocks.{number}", block["in"] * block["expand"]
        if block["expand"] != 1:
            shapes[f"{name}._expand_conv.weight"] = (wide, block["in"], 1, 1)
            bn(f"{name}._bn0", wide)
        shapes[f"{name}._depthwise_conv.weight"] = (wide, 1, block["kernel"], block["kernel"])
        bn(f"{name}._bn1", wide)
        shapes[f"{name}._se_reduce.weight"] = (block["squeeze"], wide, 1, 1)
        shapes[f"{name}._se_reduce.bias"] = (block["squeeze"],)
        shapes[f"{name}._se_expand.weight"] = (wide, block["squeeze"], 1, 1)
        shapes[f"{name}._se_expand.bias"] = (wide,)
        shapes[f"{name}._project_conv.weight"] = (block["out"], wide, 1, 1)
        bn(f"{name}._bn2", block["out"])
    shapes["net._conv_head.weight"] = (head, b4_blocks()[-1]["out"], 1, 1)
    bn("net._bn1", head)
    shapes["net._fc.weight"], shapes["net._fc.bias"] = (2, head), (2,)
    return shapes


def random_authors_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights in their names (He-scaled convs, batch-norm affine near 1 and 0; running
    statistics to be set by `calibrate`)."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in authors_shapes().items():
        if name.endswith("num_batches_tracked"):
            state[name] = torch.tensor(0, dtype=torch.long)
        elif name.endswith("running_var"):
            state[name] = torch.ones(shape)
        elif name.endswith("running_mean"):
            state[name] = torch.zeros(shape)
        elif len(shape) == 4:
            fan_in = shape[1] * shape[2] * shape[3]
            state[name] = torch.randn(shape, generator=generator) * math.sqrt(2.0 / fan_in)
        elif name.endswith("_fc.weight"):
            state[name] = torch.randn(shape, generator=generator) * 0.05
        elif ".weight" in name:  # batch-norm scale
            state[name] = 0.5 + 0.5 * torch.rand(shape, generator=generator)
        else:
            state[name] = 0.1 * torch.randn(shape, generator=generator)
    return state


def static_same_pad(size: int, kernel: int, stride: int) -> tuple[int, int, int, int]:
    """utils.py Conv2dStaticSamePadding's ZeroPad2d for a square `size` input (left, right, top, bottom)."""
    out = math.ceil(size / stride)
    pad = max((out - 1) * stride + kernel - size, 0)
    return pad // 2, pad - pad // 2, pad // 2, pad - pad // 2


def authors_logits(
    state: dict, images: torch.Tensor, calibrate: bool = False, image_size: int = IMAGE_SIZE
) -> torch.Tensor:
    """Their `Detector.forward` (EfficientNet.forward, eval) on images (N, 3, H, W), its padding
    computed for `image_size` as efficientnet_pytorch computes it when the model is built (B4's 380
    in theirs, whatever the input's size).
    With `calibrate`, each batch norm's running statistics are first set to the batch's own (so that
    random weights pass a signal through 32 blocks); `state` is changed then."""

    def bn(x: torch.Tensor, name: str) -> torch.Tensor:
        if calibrate:
            state[f"{name}.running_mean"] = x.mean((0, 2, 3))
            state[f"{name}.running_var"] = x.var((0, 2, 3))
        mean, var = state[f"{name}.running_mean"], state[f"{name}.running_var"]
        return F.batch_norm(x, mean, var, state[f"{name}.weight"], state[f"{name}.bias"], False, 0.0, BN_EPS)

    def swish(x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(x)

    def conv(x: torch.Tensor, name: str, size: int, stride: int = 1, groups: int = 1) -> torch.Tensor:
        weight = state[f"{name}.weight"]
        x = F.pad(x, static_same_pad(size, weight.shape[-1], stride))
        return F.conv2d(x, weight, state.get(f"{name}.bias"), stride, 0, 1, groups)

    size = image_size  # utils.py get_same_padding_conv2d: static padding, for the size the model was built for
    x = swish(bn(conv(images, "net._conv_stem", size, 2), "net._bn0"))
    size = math.ceil(size / 2)
    for number, block in enumerate(b4_blocks()):
        name, inputs = f"net._blocks.{number}", x
        if block["expand"] != 1:
            x = swish(bn(conv(x, f"{name}._expand_conv", size), f"{name}._bn0"))
        x = conv(x, f"{name}._depthwise_conv", size, block["stride"], groups=x.shape[1])
        x = swish(bn(x, f"{name}._bn1"))
        squeezed = F.adaptive_avg_pool2d(x, 1)
        squeezed = conv(swish(conv(squeezed, f"{name}._se_reduce", 1)), f"{name}._se_expand", 1)
        x = torch.sigmoid(squeezed) * x
        x = bn(conv(x, f"{name}._project_conv", size), f"{name}._bn2")
        if block["stride"] == 1 and block["in"] == block["out"]:
            x = x + inputs
        size = math.ceil(size / block["stride"])
    x = swish(bn(conv(x, "net._conv_head", size), "net._bn1"))
    return F.linear(F.adaptive_avg_pool2d(x, 1).flatten(1), state["net._fc.weight"], state["net._fc.bias"])


def authors_p_fake(state: dict, crops: list[np.ndarray]) -> np.ndarray:
    """inference_video.py: `torch.tensor(face_list).float()/255`, `model(img).softmax(1)[:,1]`, with
    their crops (380 x 380 x 3 RGB, transposed to CHW as theirs are)."""
    with torch.no_grad():
        images = torch.tensor(np.array([crop.transpose((2, 0, 1)) for crop in crops])).float() / 255
        return authors_logits(state, images).softmax(1)[:, 1].numpy()


def authors_checkpoint(state: dict) -> dict:
    """train_sbi.py's `torch.save({"model": ..., "optimizer": ..., "epoch": ...})`, the optimizer a SAM
    state dict (its `e_w` per parameter; two of them here, to keep the file small)."""
    names = [name for name in state if not name.endswith("num_batches_tracked")]
    optimizer = {
        "state": {index: {"e_w": torch.zeros_like(state[name])} for index, name in enumerate(names[:2])},
        "param_groups": [{"rho": 0.05, "adaptive": False, "lr": 0.001, "momentum": 0.9, "params": list(range(2))}],
    }
    return {"model": state, "optimizer": optimizer, "epoch": 99}


def finder_json_box(box, width: int, height: int) -> list[float] | None:
    """retinaface/predict_single.py predict_jsons on one box: the clipped extent decides whether it is
    kept, the box itself is returned unclipped, rounded to 2 decimals."""
    x_min, y_min, x_max, y_max = box
    x_min = np.clip(x_min, 0, width - 1)
    x_max = np.clip(x_max, x_min + 1, width - 1)
    if x_min >= x_max:
        return None
    y_min = np.clip(y_min, 0, height - 1)
    y_max = np.clip(y_max, y_min + 1, height - 1)
    if y_min >= y_max:
        return None
    return np.round(np.asarray(box, dtype=float), 2).tolist()


def crop_face_test(img: np.ndarray, bbox: np.ndarray) -> np.ndarray:
    """preprocess.py crop_face(img, None, bbox, False, crop_by_bbox=True, only_img=True, phase='test')."""
    H, W = len(img), len(img[0])  # noqa: N806 (their names)
    x0, y0 = bbox[0]
    x1, y1 = bbox[1]
    w = x1 - x0
    h = y1 - y0
    w0_margin, w1_margin, h0_margin, h1_margin = w / 4, w / 4, h / 4, h / 4
    w0_margin *= 0.5
    w1_margin *= 0.5
    h0_margin *= 0.5
    h1_margin *= 0.5
    y0_new = max(0, int(y0 - h0_margin))
    y1_new = min(H, int(y1 + h1_margin) + 1)
    x0_new = max(0, int(x0 - w0_margin))
    x1_new = min(W, int(x1 + w1_margin) + 1)
    return img[y0_new:y1_new, x0_new:x1_new]


def authors_frame_faces(frame: np.ndarray, detected) -> tuple[list, list]:
    """`authors_extract_frame` on boxes as MTCNN gives them, put through predict_jsons' output rule."""
    height, width = frame.shape[:2]
    boxes = [box for box in (finder_json_box(b, width, height) for b in detected) if box is not None]
    return authors_extract_frame(frame, [{"bbox": box} for box in boxes] or [{"bbox": [], "score": -1}])


def authors_extract_frame(frame: np.ndarray, faces: list[dict]) -> tuple[list, list]:
    """preprocess.py extract_frames' per-frame body on `faces = model.predict_jsons(frame)`: every face
    cropped and resized (an exception, such as cv2.resize's on an empty crop or the unpacking of
    predict_jsons' `"bbox": []` when it found nothing, skips the frame), then the faces with at
    least half the largest area. Their crops come back HWC here (theirs are CHW)."""
    try:
        if len(faces) == 0:
            return [], []
        size_list, croppedfaces_temp, boxes = [], [], []
        for face_idx in range(len(faces)):
            x0, y0, x1, y1 = faces[face_idx]["bbox"]
            bbox = np.array([[x0, y0], [x1, y1]])
            croppedfaces_temp.append(cv2.resize(crop_face_test(frame, bbox), dsize=(380, 380)))
            boxes.append([x0, y0, x1, y1])
            size_list.append((x1 - x0) * (y1 - y0))
        max_size = max(size_list)
        keep = [i for i in range(len(faces)) if size_list[i] >= max_size / 2]
        return [boxes[i] for i in keep], [croppedfaces_temp[i] for i in keep]
    except (ValueError, cv2.error):
        return [], []


def authors_frames(path, num_frames: int = 32) -> dict[int, np.ndarray]:
    """extract_frames' reading: CAP_PROP_FRAME_COUNT, linspace `-n` (dtype=int), every frame read in
    turn, those at an index kept (each once), RGB; a failed read ends it (theirs raises there)."""
    capture = cv2.VideoCapture(str(path))
    frame_count_org = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    frame_idxs = np.linspace(0, frame_count_org - 1, num_frames, endpoint=True, dtype=int)
    frames = {}
    for cnt_frame in range(frame_count_org):
        ret_org, frame_org = capture.read()
        if not ret_org:
            break
        if cnt_frame not in frame_idxs:
            continue
        frames[cnt_frame] = cv2.cvtColor(frame_org, cv2.COLOR_BGR2RGB)
    capture.release()
    return frames


def authors_video_score(p_fake: np.ndarray, idx_list: list[int]) -> float:
    """inference_video.py: consecutive faces of one frame grouped, each group's max, their mean."""
    pred_list, idx_img = [], -1
    for i in range(len(p_fake)):
        if idx_list[i] != idx_img:
            pred_list.append([])
            idx_img = idx_list[i]
        pred_list[-1].append(float(p_fake[i]))
    return float(np.mean([max(group) for group in pred_list]))
