"""Training: the one shared loop, models, optimizers, checkpoints, data, and the trainable API."""
