"""The models: encoders and the classifier on top (zoo), pretrained weights that never hang
(pretrained), what a checkpoint may ask its model to be (checkpoint_model), which parameters train
(tuning: head, layernorm, LoRA) and temporal models over clips of a face track (temporal)."""
