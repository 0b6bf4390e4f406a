"""Losses, registered in LOSS_REGISTRY by class name."""
