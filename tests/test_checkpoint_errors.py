"""Malformed checkpoints: each one a single line `error: PATH: PROBLEM` and exit status 2 from the
commands that load models, never a traceback or a file that is not named."""

from __future__ import annotations

import math
import pickle

import pytest
import torch
from PIL import Image

from common import cli
from inference.models.ensemble import load_member
from inference.prediction import predict_folder as predict
from inference.serving import detection as detect
from preprocess.demo_world.identities import builtin_photos
from tests.conftest import REPO_ROOT, save_tiny_checkpoint
from training.models.zoo import ENCODERS, CheckpointError, load_weights, normalization


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict:
    """A well-formed tiny checkpoint's contents, to break one thing at a time."""
    path = save_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "tiny.pt")
    return torch.load(path, weights_only=True)


def _with(checkpoint: dict, **changes) -> dict:
    return {**checkpoint, "state_dict": dict(checkpoint["state_dict"]), **changes}


def _non_tensor_weight(checkpoint):
    broken = _with(checkpoint)
    broken["state_dict"]["fc.weight"] = "oops"
    return broken


def _weight_as(checkpoint, make):
    """`checkpoint` with fc.weight replaced by make(fc.weight)."""
    broken = _with(checkpoint)
    broken["state_dict"]["fc.weight"] = make(broken["state_dict"]["fc.weight"])
    return broken


def _temporal(checkpoint, **settings):
    usual = {"clip_length": 4, "head": "gru", "hidden": 8, "layers": 1, "bidirectional": True}
    return _with(checkpoint, kind="temporal", temporal={**usual, "freeze_encoder": False, "dropout": 0.0, **settings})


MALFORMED = {
    "non-tensor weight": (_non_tensor_weight, "`state_dict` entry fc.weight is a str, not a tensor"),
    "meta weight": (
        lambda c: _weight_as(c, lambda w: torch.empty(w.shape, device="meta")),
        "`state_dict` entry fc.weight is a meta tensor, a shape without its numbers",
    ),
    "sparse weight": (
        lambda c: _weight_as(c, lambda w: w.to_sparse()),
        "`state_dict` entry fc.weight is a torch.sparse_coo tensor, not a dense one",
    ),
    "complex weight": (
        lambda c: _weight_as(c, lambda w: w.to(torch.complex64)),
        "`state_dict` entry fc.weight holds complex numbers (torch.complex64)",
    ),
    # NaN weights loaded, and predict wrote 0.500000 for every video and exited 0 (the failures only in errors.csv)
    "NaN weight": (
        lambda c: _weight_as(c, lambda w: torch.full_like(w, math.nan)),
        "weights that are NaN or infinite: 1 (fc.weight)",
    ),
    "infinite running variance": (
        lambda c: _with(c, state_dict={**c["state_dict"], "encoder.bn1.running_var": torch.full((64,), math.inf)}),
        "weights that are NaN or infinite: 1 (encoder.bn1.running_var)",
    ),
    # loaded as inf: load_state_dict casts to the model's float32 after the stored tensors were checked
    "float64 weight no float32 holds": (
        lambda c: _weight_as(
            c,
            lambda w: torch.cat([w.double().flatten()[:-1], torch.tensor([1e300], dtype=torch.float64)]).view(w.shape),
        ),
        "weights too large for the model's number type (infinite once cast): 1 (fc.weight torch.float64 -> "
        "torch.float32)",
    ),
    "integer weight": (
        lambda c: _weight_as(c, lambda w: w.to(torch.int64)),
        "weights that are not floating point numbers: 1 (fc.weight torch.int64)",
    ),
    "unknown train_only": (
        lambda c: _with(c, config={"model": {"train_only": "bogus"}}),
        "cannot build the model it describes (model.train_only must be one of all, head, layernorm, lora, got 'bogus')",
    ),
    "LoRA on a ResNet": (
        lambda c: _with(c, config={"model": {"train_only": "lora"}}),
        "cannot build the model it describes (model.train_only: lora found no linear layer",
    ),
    "temporal head of 9 layers": (lambda c: _temporal(c, layers=9), "`temporal.layers` 9 is more than 8"),
    "state_dict a list": (
        lambda c: _with(c, state_dict=list(c["state_dict"].values())),
        "`state_dict` is a list, not a mapping",
    ),
    "temporal without settings": (lambda c: _with(c, kind="temporal"), "needs its `temporal` settings"),
    "temporal settings cut short": (
        lambda c: _with(c, kind="temporal", temporal={"clip_length": 4, "head": "gru"}),
        "its `temporal` settings lack hidden, layers, bidirectional, freeze_encoder, dropout",
    ),
    "temporal clip of 0 crops": (
        lambda c: _with(
            c,
            kind="temporal",
            temporal={
                "clip_length": 0,
                "head": "gru",
                "hidden": 8,
                "layers": 1,
                "bidirectional": True,
                "freeze_encoder": False,
                "dropout": 0.0,
            },
        ),
        "`temporal.clip_length` 0 is not a whole number above 0",
    ),
    "unknown kind": (lambda c: _with(c, kind="banana"), "`kind` 'banana' is neither frame nor temporal"),
    "unknown encoder": (lambda c: _with(c, encoder="resnet9000"), "unknown encoder 'resnet9000'"),
    "encoder not a name": (lambda c: _with(c, encoder=42), "the encoder must be a name, got int 42"),
    "input size 0": (lambda c: _with(c, input_size=0), "`input_size`: input size 0 is not a whole number"),
    "negative input size": (lambda c: _with(c, input_size=-5), "input size -5 is not a whole number"),
    "input size a string": (lambda c: _with(c, input_size="big"), "input size 'big' is not a whole number"),
    "huge input size": (lambda c: _with(c, input_size=100_000), "input size 100000 is not a whole number"),
    "NaN mean": (lambda c: _with(c, mean=[math.nan, 0.45, 0.4]), "`mean` [nan, 0.45, 0.4] is out of range"),
    "mean of 400 digits": (  # an OverflowError traceback (math.isfinite), outside load_member's checks
        lambda c: _with(c, mean=[10**400, 0.45, 0.4]),
        "`mean` [100000000000000000...0000000000000000000, 0.45, 0.4] is out of range",
    ),
    "mean of 0..255 images": (lambda c: _with(c, mean=[123.675, 116.28, 103.53]), "`mean` [123.675"),
    "two means": (lambda c: _with(c, mean=[0.5, 0.5]), "`mean` must be three numbers (R, G, B), got [0.5, 0.5]"),
    "std of 0": (lambda c: _with(c, std=[0.0, 0.2, 0.2]), "`std` [0.0, 0.2, 0.2] is out of range"),
    "negative std": (lambda c: _with(c, std=[-0.2, 0.2, 0.2]), "`std` [-0.2, 0.2, 0.2] is out of range"),
    "std of strings": (lambda c: _with(c, std=["0.2", "0.2", "0.2"]), "`std` must be three numbers"),
    "config a list": (lambda c: _with(c, config=[1, 2]), "`config.model` (and its `encoder_args`) must be mappings"),
}


def _one_line_error(capsys, status: int, path) -> str:
    captured = capsys.readouterr()
    assert status == 2, captured.err[-2000:]
    assert "Traceback" not in captured.err and captured.out == ""
    lines = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, captured.err[-2000:]
    assert lines[0].startswith(f"error: {path}: "), lines[0]
    return lines[0]


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_checkpoint_is_one_line_naming_the_file_in_detect(case, tiny, tmp_path, capsys):
    break_it, problem = MALFORMED[case]
    path = tmp_path / "broken.pt"
    torch.save(break_it(tiny), path)
    status = cli.run(detect.main, [str(tmp_path / "clip.mp4"), "--models", str(path), "--runtime", "torch"])
    line = _one_line_error(capsys, status, path)
    assert problem in line, line


@pytest.mark.parametrize("junk", [b"junk\n", b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01h\x05u."])
def test_junk_bytes_are_one_line_naming_the_file(junk, tmp_path, capsys):
    path = tmp_path / "junk.pt"
    path.write_bytes(junk)  # text, and a pickle whose memo lookup fails: the unpickler raises KeyError
    status = cli.run(detect.main, [str(tmp_path / "clip.mp4"), "--models", str(path), "--runtime", "torch"])
    line = _one_line_error(capsys, status, path)
    assert "not a readable PyTorch checkpoint" in line or "refused to load" in line, line


def test_a_malformed_checkpoint_is_one_line_naming_the_file_in_predict(tiny, tmp_path, capsys):
    path = tmp_path / "broken.pt"
    torch.save(_with(tiny, std=[0.2, math.inf, 0.2]), path)
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "clip.mp4").write_bytes(b"never read: the models are refused first")
    arguments = ["--test-dir", str(tmp_path / "videos"), "--models", str(path), "--runtime", "torch"]
    status = cli.run(predict.main, [*arguments, "--output", str(tmp_path / "submission.csv")])
    assert "`std` [0.2, inf, 0.2] is out of range" in _one_line_error(capsys, status, path)
    assert not (tmp_path / "submission.csv").exists()


def test_nan_weights_stop_predict_at_load_before_a_row_is_written(tiny, tmp_path, capsys):
    """A checkpoint of NaN weights loaded, and predict exited 0 with every row 0.500000 (each video
    a `classify` error in errors.csv): now it is refused at load, naming the file."""
    path = tmp_path / "nan.pt"
    torch.save(_weight_as(tiny, lambda w: torch.full_like(w, math.nan)), path)
    (tmp_path / "videos").mkdir()
    Image.fromarray(builtin_photos()["astronaut"]).save(tmp_path / "videos" / "astronaut.jpg")
    arguments = ["--test-dir", str(tmp_path / "videos"), "--models", str(path), "--runtime", "torch"]
    status = cli.run(predict.main, [*arguments, "--output", str(tmp_path / "out" / "submission.csv")])
    assert "weights that are NaN or infinite: 1 (fc.weight)" in _one_line_error(capsys, status, path)
    assert not (tmp_path / "out").exists()


def test_a_bad_input_size_given_for_a_bare_checkpoint_names_the_file_and_where_it_came_from(tiny, tmp_path):
    path = tmp_path / "bare.pt"
    torch.save(tiny["state_dict"], path)
    with pytest.raises(CheckpointError, match=rf"^{path}: input size -5 .* \(given by --size or the ensemble file\)"):
        load_member(path, torch.device("cpu"), encoder="resnet18", input_size=-5)
    member = load_member(path, torch.device("cpu"), encoder="resnet18", input_size=48)
    assert (member.input_size, member.mean) == (48, pytest.approx(normalization("resnet18")[0]))


def test_the_range_check_accepts_every_listed_encoders_normalisation_and_ours():
    from training.models.zoo import normalization_problem

    for name in [*ENCODERS, "resnet18"]:
        mean, std = normalization(name)
        assert normalization_problem(list(mean), list(std)) is None, name


@pytest.mark.parametrize(
    ("member", "problem"),
    [
        ("{checkpoint: tiny.pt, weight: heavy}", "member 0's `weight` 'heavy' is not a finite number of 0 or more"),
        ("{checkpoint: tiny.pt, weight: .nan}", "member 0's `weight` nan is not a finite number of 0 or more"),
        (  # an OverflowError traceback (float(weight))
            "{checkpoint: tiny.pt, weight: " + "9" * 400 + "}",
            "member 0's `weight` an integer of about 400 digits is not a finite number of 0 or more",
        ),
        (  # said "'1e308' is not a finite number": YAML 1.1 reads it as text
            "{checkpoint: tiny.pt, weight: 1e308}",
            "member 0's `weight` '1e308' (read as text: YAML reads an exponent only after a dot, with its sign: "
            "write 1.0e+308) is not a finite number",
        ),
        ("{checkpoint: tiny.pt, weight: 1e-3}", "(read as text: YAML reads an exponent only after a dot, with its"),
    ],
    ids=["text", "nan", "400 digits", "1e308", "1e-3"],
)
def test_a_malformed_ensemble_file_is_one_line_naming_it(member, problem, tmp_path, capsys):
    ensemble = tmp_path / "ensemble.yaml"
    ensemble.write_text(f"members:\n  - {member}\n")
    status = cli.run(detect.main, [str(tmp_path / "clip.mp4"), "--ensemble", str(ensemble)])
    assert problem in _one_line_error(capsys, status, ensemble)


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"hidden": 2**16}, "`temporal.hidden` 65536 is more than 4096"),  # a GRU of 51 GB, asked by a tiny file
        ({"layers": 64}, "`temporal.layers` 64 is more than 8"),
        ({"clip_length": 257}, "`temporal.clip_length` 257 is more than 256"),
        ({"frame_step": 2**17}, "`temporal.frame_step` 131072 is more than 65536"),
        ({"hidden": 0}, "`temporal.hidden` 0 is not a whole number above 0"),
    ],
)
def test_a_temporal_head_too_big_to_build_is_refused_before_it_is_built(settings, problem):
    from training.models.temporal import temporal_settings_problem

    usual = {"clip_length": 4, "head": "gru", "hidden": 8, "layers": 1, "bidirectional": True}
    usual.update(freeze_encoder=False, dropout=0.0)
    assert temporal_settings_problem(usual) is None
    assert temporal_settings_problem({**usual, **settings}) == problem


def test_the_temporal_configs_fit_the_bounds():
    import yaml

    from training.models.temporal import temporal_settings_problem

    for path in sorted((REPO_ROOT / "configs").glob("temporal*.yaml")):
        temporal = yaml.safe_load(path.read_text())["temporal"]
        usual = {"bidirectional": True, "freeze_encoder": False, "dropout": 0.0}
        assert temporal_settings_problem({**usual, **temporal}) is None, path


def test_a_load_that_fails_after_every_check_still_names_the_file(tmp_path):
    class Refusing(torch.nn.Linear):
        def _load_from_state_dict(self, *args, **kwargs):
            raise RuntimeError("the copy failed\nand a second line")

    model = Refusing(3, 1)
    with pytest.raises(CheckpointError, match=r"^x\.pt: the model cannot load its weights \(the copy failed\)$"):
        load_weights(model, model.state_dict(), "x.pt")


def test_the_checks_keep_integer_buffers_and_half_precision_weights(tiny):
    from training.models.zoo import create_model

    model = create_model("resnet18")
    state = {key: value.half() if value.is_floating_point() else value for key, value in tiny["state_dict"].items()}
    assert any(not value.is_floating_point() for value in state.values()), "num_batches_tracked, int64"
    load_weights(model, state, "half.pt")
    assert torch.equal(model.fc.weight, tiny["state_dict"]["fc.weight"].half().float())


def test_weights_are_checked_in_the_model_s_number_type(tiny):
    """1e5 is finite in float32 but inf in a float16 model (the largest float16 is 65504)."""
    from training.models.zoo import create_model

    model = create_model("resnet18").half()
    state = _weight_as(tiny, lambda w: torch.full_like(w, 1e5))["state_dict"]
    with pytest.raises(
        CheckpointError, match=r"^big\.pt: weights too large .*fc\.weight torch\.float32 -> torch\.float16"
    ):
        load_weights(model, state, "big.pt")
    assert bool(torch.isfinite(model.fc.weight).all()), "the model is left as it was"
    load_weights(model, _weight_as(tiny, lambda w: torch.full_like(w, 6e4))["state_dict"], "fits.pt")


def test_torchs_advice_to_load_unsafely_and_its_colours_never_reach_the_line(tmp_path):
    """A legacy .tar archive (SBI's checkpoints are named .tar): torch.load's refusal goes on to advise
    weights_only=False, unsafe and never taken here, and an unpickling refusal carries terminal
    colours; the line keeps torch's first sentence only."""
    import tarfile

    from inference.detectors.sbi_model import read_authors_checkpoint
    from training.models.zoo import CheckpointError, read_checkpoint, weights_only_refusal

    (tmp_path / "a.txt").write_text("not weights")
    with tarfile.open(tmp_path / "FFc23.tar", "w") as archive:
        archive.add(tmp_path / "a.txt", arcname="a.txt")
    for read in (read_checkpoint, read_authors_checkpoint):
        with pytest.raises(CheckpointError) as refused:
            read(tmp_path / "FFc23.tar")
        assert str(refused.value).endswith("saved in the legacy .tar format.)"), str(refused.value)
        assert "False" not in str(refused.value)
    coloured = pickle.UnpicklingError(
        "Weights only load failed.\n\x1b[1mWeightsUnpickler error: \x1b[0mUnsupported operand 7"
    )
    assert weights_only_refusal(coloured) == (
        "not a checkpoint that a weights-only load can read (WeightsUnpickler error: Unsupported operand 7)"
    )
