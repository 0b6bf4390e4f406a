"""srkit: a research framework for single-image super-resolution.

Importing srkit is cheap: components are imported by their registries on first use, and optional
packages (torchvision, tensorboard, lmdb, onnx) only where they are needed.
"""
__version__ = '0.1.0'
