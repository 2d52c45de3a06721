"""Every pipeline step explains itself with --help."""

from __future__ import annotations

import importlib

import pytest

STEPS = {
    "preprocess.make_demo_data": "dfdc_train_part_K",
    "preprocess.datasets": "ffpp",
    "preprocess.detect_faces": "boxes/{video}.json",
    "preprocess.extract_crops": "crops/{video}/{frame}_{face}.png",
    "preprocess.landmarks": "landmarks/{video}/{frame}_{face}.npy",
    "preprocess.diffs": "diffs/{fake}/{frame}_{face}_diff.png",
    "preprocess.folds": "video,file,label,original,frame,fold",
    "preprocess.run_all": "detect_faces, extract_crops, landmarks, diffs, folds",
    "preprocess.bench": "every frame at 0.5x",
    "training.train": "{name}_{fold}_{seed}_best.pt",
    "training.plot_log": "metrics.csv",
    "training.bench": "steps",
    "inference.predict": "errors.csv",
    "inference.score": "score.json",
    "inference.fit_ensemble": "oof_predictions.csv",
    "inference.calibrate": "--oof",
    "inference.bench": "decode, detect, classify",
    "inference.benchmarks.command_bench": "load average",
    "inference.benchmarks.original_baseline": "filename,label",
    "inference.benchmarks.sharp_checkpoint": "+-SPREAD",
    "inference.weights": "weights.json",
    "inference.detect": "--json",
    "inference.app": "127.0.0.1",
    "inference.evaluation.timeliness": "timeliness.json",
    "training.compare": "summary.json",
    "preprocess.inventory": "inventory.json",
}


@pytest.mark.parametrize("module", sorted(STEPS))
def test_help_names_the_command_and_its_outputs(module, capsys):
    with pytest.raises(SystemExit) as exit_info:
        importlib.import_module(module).main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert f"python -m {module}" in text or f"-m {module}" in text
    assert STEPS[module] in text
