"""efficientnet_pytorch's EfficientNet-B4 parameter names as timm's `tf_efficientnet_b4` names them:
the one map SBI's and DeepfakeBench's checkpoints (both saved from efficientnet_pytorch 0.7.1) are
read through. B4 has 32 blocks in stages of STAGE_LENGTHS (timm's blocks[stage][index]); the first
stage has no expansion (timm's DepthwiseSeparableConv), the others do (InvertedResidual)."""

from __future__ import annotations

STAGE_LENGTHS = (2, 4, 4, 6, 6, 8, 2)
TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2"}
FIRST_STAGE = {
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn1",
    "_se_reduce": "se.conv_reduce",
    "_se_expand": "se.conv_expand",
    "_project_conv": "conv_pw",
    "_bn2": "bn2",
}
OTHER_STAGES = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_se_reduce": "se.conv_reduce",
    "_se_expand": "se.conv_expand",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}


def block_position(block: int) -> tuple[int, int]:
    """efficientnet_pytorch's block number as timm's (stage, index in the stage); KeyError past B4's."""
    for stage, length in enumerate(STAGE_LENGTHS):
        if block < length:
            return stage, block
        block -= length
    raise KeyError(f"block {block} past B4's {sum(STAGE_LENGTHS)}")


def efficientnet_key(key: str) -> str | None:
    """timm's name of an efficientnet_pytorch B4 parameter (`_blocks.5._bn1.weight`,
    `_conv_stem.weight`), or None where B4's body has no such parameter (the head is each format's own)."""
    module, _, parameter = key.rpartition(".")
    head, _, rest = module.partition(".")
    if head in TOP and not rest:
        return f"{TOP[head]}.{parameter}"
    number, _, name = rest.partition(".")
    if head != "_blocks" or not number.isdigit() or not parameter:
        return None
    try:
        stage, index = block_position(int(number))
    except KeyError:
        return None
    names = FIRST_STAGE if stage == 0 else OTHER_STAGES
    return f"blocks.{stage}.{index}.{names[name]}.{parameter}" if name in names else None


def efficientnet_names() -> dict[str, str]:
    """{timm's module prefix: efficientnet_pytorch's}, for naming a timm key in the authors' terms."""
    inverse = {f"{ours}.": f"{theirs}." for theirs, ours in TOP.items()}
    for stage, length in enumerate(STAGE_LENGTHS):
        names = FIRST_STAGE if stage == 0 else OTHER_STAGES
        first = sum(STAGE_LENGTHS[:stage])
        for index in range(length):
            for theirs, ours in names.items():
                inverse[f"blocks.{stage}.{index}.{ours}."] = f"_blocks.{first + index}.{theirs}."
    return inverse
