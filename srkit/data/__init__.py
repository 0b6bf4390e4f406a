"""Datasets, samplers, transforms, file backends and degradations (MATLAB bicubic)."""
