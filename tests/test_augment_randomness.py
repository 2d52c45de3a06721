"""The training augmentations are drawn independently: statistics over thousands of sample seeds.

Each optional transform must happen at its configured rate, and any two that are not alternatives
of one OneOf must happen together at the product of their rates; the same for the cutout branches
against the flip. albumentations' `Compose.set_random_seed` gives every child the same seed, which
made flip, JPEG and the affine always happen together (joint rate 0.5 where 0.25 is expected).
Samples go through `CropDataset.finish`, the path training takes."""

from __future__ import annotations

import itertools

import albumentations as A
import numpy as np
import pandas as pd
import pytest

from preprocess.faces.face_geometry import TEMPLATE
from tests.conftest import ALBUMENTATIONS_ARGUMENT_WARNING_AS_ERROR
from training.data import augment
from training.data.dataset import CropDataset

# albumentations 2.x only warns on an argument it does not know, then uses its default: an error here
pytestmark = pytest.mark.filterwarnings(ALBUMENTATIONS_ARGUMENT_WARNING_AS_ERROR)

SEEDS = 3000
SIZE = 48
TOLERANCE = 0.03


def _leaves(transform, path=()):
    for index, child in enumerate(getattr(transform, "transforms", ())):
        if isinstance(child, A.BaseCompose):
            yield from _leaves(child, (*path, index))
        else:
            yield (*path, index), child


def _record_applied(pipeline: A.Compose, applied: list[str]) -> dict[str, tuple]:
    """Make every leaf transform log its name when it is applied; {name: OneOf path or ()}."""
    groups = {}
    for path, leaf in _leaves(pipeline):
        name = f"{type(leaf).__name__}@{'.'.join(map(str, path))}"
        groups[name] = path[:-1]
        original = leaf.apply_with_params

        def logged(params, *args, _name=name, _original=original, **kwargs):
            applied.append(_name)
            return _original(params, *args, **kwargs)

        leaf.apply_with_params = logged
    return groups


def _record_cutouts(monkeypatch, applied: list[str]) -> None:
    for name in ("remove_landmark", "blackout_half_face_hull", "keep_random_part"):
        original = getattr(augment, name)

        def logged(*args, _name=name, _original=original, **kwargs):
            applied.append(_name)
            return _original(*args, **kwargs)

        monkeypatch.setattr(augment, name, logged)


def _draws(tmp_path, monkeypatch, label: int) -> tuple[pd.DataFrame, dict[str, tuple]]:
    """One row per sample seed, one boolean column per transform or cutout branch."""
    rows = pd.DataFrame([{"video": "v", "file": "0_0.png", "label": label, "original": "v", "frame": 0, "fold": 1}])
    dataset = CropDataset(tmp_path, rows, train=True, size=SIZE, mean=(0.5,) * 3, std=(0.5,) * 3)
    applied: list[str] = []
    groups = _record_applied(dataset.transforms, applied)
    _record_cutouts(monkeypatch, applied)
    crop = np.random.default_rng(0).integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)
    diff = np.zeros((SIZE, SIZE), np.uint8)
    diff[10:30, 10:30] = 255
    landmarks = (TEMPLATE * SIZE).astype(np.float32)
    dataset.reset(epoch=0, seed=111)
    draws = []
    for position in range(SEEDS):
        applied.clear()
        seed = (dataset.epoch_seed * 1_000_003 + position) % 2**32  # as CropDataset._load makes them
        dataset.finish(crop, diff, landmarks, float(label), seed)
        draws.append(dict.fromkeys(applied, True))
    names = [*groups, "remove_landmark", "blackout_half_face_hull", "keep_random_part"]
    return pd.DataFrame(draws, columns=names).fillna(False).astype(bool), groups


@pytest.fixture(scope="module")
def draws_of(tmp_path_factory):
    """`draws_of(label)`: `_draws` for that label, made once for the module (two tests read label 0's)."""
    made = {}

    def draws_of(label: int) -> tuple[pd.DataFrame, dict[str, tuple]]:
        if label not in made:
            with pytest.MonkeyPatch.context() as monkeypatch:
                made[label] = _draws(tmp_path_factory.mktemp("draws"), monkeypatch, label)
        return made[label]

    return draws_of


def _configured_rates() -> dict[str, float]:
    """Each leaf's probability of being applied, from the pipeline's own p values."""
    pipeline, rates = augment.train_transforms(SIZE), {}
    for path, leaf in _leaves(pipeline):
        rate = leaf.p
        if len(path) == 2:  # an alternative of a OneOf: the OneOf's p, then weighted by the p's
            one_of = pipeline.transforms[path[0]]
            rate = one_of.p * leaf.p / sum(t.p for t in one_of.transforms)
        rates[f"{type(leaf).__name__}@{'.'.join(map(str, path))}"] = rate
    return rates


@pytest.mark.parametrize("label", [0, 1])
def test_each_transform_and_cutout_happens_at_its_own_rate_and_independently(draws_of, label):
    draws, groups = draws_of(label)
    expected = {
        **_configured_rates(),
        # with landmarks: p 0.7; else p 0.2 the half hull; else p 0.1 a kept half or quarter
        "remove_landmark": 0.7,
        "blackout_half_face_hull": 0.3 * 0.2,
        "keep_random_part": 0.3 * 0.8 * 0.1,
    }
    assert expected["HorizontalFlip@3"] == 0.5 and expected["ImageCompression@0"] == 0.5
    assert expected["ToGray@7"] == 0.2 and expected["Affine@8"] == 0.5
    rates = draws.mean()
    off = {
        name: (round(rates[name], 3), rate) for name, rate in expected.items() if abs(rates[name] - rate) > TOLERANCE
    }
    assert not off, f"rates (measured, configured) off by more than {TOLERANCE}: {off}"

    dependent = {}
    for first, second in itertools.combinations(expected, 2):
        if groups.get(first, ()) and groups.get(first) == groups.get(second):
            continue  # alternatives of one OneOf exclude each other by design
        if {first, second} <= {"remove_landmark", "blackout_half_face_hull", "keep_random_part"}:
            continue  # the cutout branches are alternatives too
        joint = (draws[first] & draws[second]).mean()
        if abs(joint - rates[first] * rates[second]) > TOLERANCE:
            dependent[(first, second)] = (round(joint, 3), round(rates[first] * rates[second], 3))
    assert not dependent, f"pairs drawn together (joint rate, product of rates): {dependent}"


def test_nothing_but_the_resize_is_rare_with_landmarks(draws_of):
    """Lock-step left 22% of crops with landmarks with nothing but the resize; independent draws
    leave about 0.5 * 0.9 * 0.95 * 0.5 * 0.3 * 0.8 * 0.5 * 0.3 * (1 - 0.084) = 1.3%."""
    draws, _ = draws_of(0)
    optional = [name for name in draws.columns if not name.startswith(("IsotropicResize", "PadIfNeeded"))]
    assert draws[optional].any(axis=1).mean() > 0.97


def test_same_seed_same_augmentation_and_seeds_differ(tmp_path):
    rows = pd.DataFrame([{"video": "v", "file": "0_0.png", "label": 0, "original": "v", "frame": 0, "fold": 1}])
    dataset = CropDataset(tmp_path, rows, train=True, size=SIZE, mean=(0.5,) * 3, std=(0.5,) * 3)
    crop = np.random.default_rng(1).integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)
    diff = np.zeros((SIZE, SIZE), np.uint8)
    landmarks = (TEMPLATE * SIZE).astype(np.float32)
    first = [dataset.finish(crop, diff, landmarks, 0.0, seed)[0] for seed in range(20)]
    again = [dataset.finish(crop, diff, landmarks, 0.0, seed)[0] for seed in reversed(range(20))][::-1]
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert len({image.tobytes() for image in first}) > 15


def test_strength_scales_every_optional_transform_but_the_flip():
    recipe, half = augment.train_transforms(SIZE), augment.train_transforms(SIZE, 0.5)
    for full, scaled in zip(recipe.transforms, half.transforms, strict=True):
        expected = full.p if isinstance(full, (A.HorizontalFlip, A.PadIfNeeded)) or full.p == 1.0 else full.p / 2
        assert scaled.p == pytest.approx(expected), type(full).__name__
    assert [t.p for t in augment.train_transforms(SIZE, 0.0).transforms if t.p < 1] == [0, 0, 0, 0.5, 0, 0, 0]
    with pytest.raises(ValueError, match="augmentation strength"):
        augment.train_transforms(SIZE, 2.0)
