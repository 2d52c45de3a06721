"""What a classifier is trained on: face crops from folds.csv as tensors (face_input), the recipe's
augmentations and face-part cutouts (augment), self-blended fakes (blends) and the training and
validation datasets (dataset)."""
