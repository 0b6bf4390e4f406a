"""Training logic: what one training step and one validation mean for each kind of model."""
