"""Numerical kernels written in plain PyTorch, with CUDA extensions used only where they import."""
from srkit.ops.selective_scan import (
                                      HAS_MAMBA_KERNEL,
                                      auto_chunk_size,
                                      selective_scan,
                                      selective_scan_chunked,
                                      selective_scan_inference,
                                      selective_scan_reference,
)

__all__ = [
    'HAS_MAMBA_KERNEL', 'auto_chunk_size', 'selective_scan', 'selective_scan_chunked', 'selective_scan_inference',
    'selective_scan_reference'
]
