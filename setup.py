"""Packaging for srkit: ``pip install -e .`` (extras: onnx, plot, tensorboard, dev)."""
from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).parent


def read_requirements(name: str) -> list[str]:
    lines = (line.split('#')[0].strip() for line in (ROOT / name).read_text().splitlines())
    return [line for line in lines if line and not line.startswith('-r')]


setup(
    name='srkit',
    version='0.1.0',
    description='A research framework for single-image super-resolution',
    long_description=(ROOT / 'README.md').read_text(encoding='utf-8') if (ROOT / 'README.md').exists() else '',
    long_description_content_type='text/markdown',
    python_requires='>=3.10',
    packages=find_packages(include=['srkit', 'srkit.*']),
    package_data={'srkit.metrics': ['niqe_pris_params.npz']},  # MATLAB's NIQE model (srkit/metrics/niqe.py)
    install_requires=[r.replace('torch==', 'torch>=') for r in read_requirements('requirements.txt')],
    extras_require={
        'onnx': ['onnx>=1.16', 'onnxruntime>=1.18'],
        'plot': ['matplotlib>=3.8'],
        'tensorboard': ['tensorboard>=2.15'],
        'dev': read_requirements('requirements-dev.txt'),
    },
)
