"""The train loop: the loss, the video-level validation score, SAM, optimizers and schedules,
torchrun/DDP plumbing, one epoch and one validation pass (engine), checkpoints, where a run starts
(--init-from, --resume) and the model and loaders a resolved config asks for (builders)."""
