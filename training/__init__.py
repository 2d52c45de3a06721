"""Training: data < models < loop < settings, under the commands (train, plot_log, ...).

Subpackages, low to high (each imports only those before it; tests/test_layout.py checks it):
data (crops, augmentations, self-blends, datasets) < models (encoders, pretrained weights, checkpoint
checks, tuning, temporal models) < loop (loss, metrics, SAM, schedules, DDP, epochs, checkpoints,
builders) < settings (the config and its bounds).
"""
