"""Image-quality metrics (MATLAB-faithful PSNR/SSIM), registered in METRIC_REGISTRY."""
