"""Training: model zoo, pretrained weights, augmentations, dataset, losses and the train loop."""
