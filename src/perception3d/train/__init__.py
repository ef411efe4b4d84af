"""Training loops, targets, losses and augmentation for the learned modes."""
