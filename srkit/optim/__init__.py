"""Optimizers and learning-rate schedulers, registered by name (any torch.optim class also works)."""
