"""Real-ESRGAN's degradation steps: random blur kernels (numpy) and batch operations on tensors (torch).

Kernels are drawn per sample in the dataset from the ``numpy.random.Generator`` the sampler's key gives, so a
kernel depends only on the sample's key. The batch operations run where the batch is (the GPU in training) and
draw from the ``torch.Generator`` passed in, never from torch's global generator: a run that saves that
generator's state resumes bit-identically. Draws happen on the generator's device and move to the batch's,
so a generator on the batch's device avoids copies.

The kernel families, their parameters and the noise models follow BasicSR (``basicsr/data/degradations.py``,
``basicsr/utils/img_process_util.py``); one deliberate difference: grey Gaussian noise is drawn per image,
where BasicSR draws one grey field for the whole batch and only scales it per image.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ['KERNEL_TYPES', 'RESIZE_MODES', 'check_kernel_options', 'check_range', 'check_probability',
           'check_distribution', 'bivariate_gaussian', 'bivariate_generalized_gaussian', 'bivariate_plateau',
           'random_mixed_kernels', 'circular_lowpass_kernel', 'filter2d', 'gaussian_noise', 'poisson_noise',
           'add_random_noise', 'random_resize', 'resize', 'draw_resize_mode', 'usm_sharp']

KERNEL_TYPES = ('iso', 'aniso', 'generalized_iso', 'generalized_aniso', 'plateau_iso', 'plateau_aniso')
RESIZE_MODES = ('area', 'bilinear', 'bicubic')


# ---------------------------------------------------------------------------------------------- kernels (numpy)

def check_range(name: str, value: Sequence[float], *, allow_zero: bool = False) -> tuple[float, float]:
    """A ``[min, max]`` option as a pair; ValueError naming it unless min <= max and min > 0 (>= 0 with
    ``allow_zero``)."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 2:
        raise ValueError(f'{name} must be a [min, max] pair, got {value!r}')
    low, high = float(value[0]), float(value[1])
    if not low <= high:
        raise ValueError(f'{name} must have min <= max, got {list(value)}')
    if low < 0 or (low == 0 and not allow_zero):
        raise ValueError(f'{name} must be {"non-negative" if allow_zero else "positive"}, got {list(value)}')
    return low, high


def check_probability(name: str, value: float) -> float:
    if not 0 <= value <= 1:
        raise ValueError(f'{name} must be a probability in [0, 1], got {value!r}')
    return float(value)


def check_distribution(name: str, probs: Sequence[float], length: int, of: str) -> list[float]:
    """Probabilities of ``length`` outcomes (``of`` says which): non-negative and summing to 1."""
    probs = [float(p) for p in probs]
    if len(probs) != length:
        raise ValueError(f'{name} must have {length} probabilities (one per entry of {of}), got {len(probs)}')
    if any(p < 0 for p in probs) or not math.isclose(sum(probs), 1.0, abs_tol=1e-6):
        raise ValueError(f'{name} must be non-negative probabilities summing to 1, got {probs}')
    return probs


def check_kernel_options(blur_kernel_size: int, kernel_list: Sequence[str], kernel_prob: Sequence[float],
                         blur_sigma: Sequence[float], betag_range: Sequence[float], betap_range: Sequence[float],
                         sinc_prob: float, suffix: str = '') -> None:
    """Refuse impossible blur options with a ValueError naming the option (``suffix``: '' or '2', BasicSR's
    names of the first and second degradation's options).

    Both beta ranges must contain 1: BasicSR draws beta below or above 1 with equal chance.
    """
    if isinstance(blur_kernel_size, bool) or not isinstance(blur_kernel_size, int) or blur_kernel_size < 3 \
            or blur_kernel_size % 2 == 0:
        raise ValueError(f'blur_kernel_size{suffix} must be odd and at least 3, got {blur_kernel_size!r}')
    unknown = [k for k in kernel_list if k not in KERNEL_TYPES]
    if unknown or not kernel_list:
        raise ValueError(f'kernel_list{suffix} has unknown kernel type(s) {unknown or kernel_list!r}; '
                         f'choose from {list(KERNEL_TYPES)}')
    check_distribution(f'kernel_prob{suffix}', kernel_prob, len(kernel_list), f'kernel_list{suffix}')
    check_range(f'blur_sigma{suffix}', blur_sigma)
    for name, beta in ((f'betag_range{suffix}', betag_range), (f'betap_range{suffix}', betap_range)):
        low, high = check_range(name, beta)
        if not low <= 1 <= high:
            raise ValueError(f'{name} must contain 1 (beta is drawn below or above 1 with equal chance), '
                             f'got {list(beta)}')
    check_probability(f'sinc_prob{suffix}', sinc_prob)


def _check_kernel_size(kernel_size: int) -> None:
    if kernel_size < 3 or kernel_size % 2 == 0:
        raise ValueError(f'kernel_size must be odd and at least 3, got {kernel_size}')


def _quadratic_form(kernel_size: int, sigma_x: float, sigma_y: float, theta: float) -> np.ndarray:
    """``p^T S^-1 p`` on the kernel's pixel grid centred at 0, ``S = R diag(sx^2, sy^2) R^T`` rotated by theta."""
    _check_kernel_size(kernel_size)
    half = kernel_size // 2
    y, x = np.mgrid[-half:half + 1, -half:half + 1].astype(np.float64)
    cos, sin = math.cos(theta), math.sin(theta)
    u = cos * x + sin * y  # coordinates along the rotated axes
    v = -sin * x + cos * y
    return (u / sigma_x) ** 2 + (v / sigma_y) ** 2


def bivariate_gaussian(kernel_size: int, sigma_x: float, sigma_y: float | None = None, theta: float = 0.0
                       ) -> np.ndarray:
    """A normalised Gaussian kernel; ``sigma_y=None`` makes it isotropic (theta is then irrelevant)."""
    q = _quadratic_form(kernel_size, sigma_x, sigma_x if sigma_y is None else sigma_y, theta)
    kernel = np.exp(-0.5 * q)
    return kernel / kernel.sum()


def bivariate_generalized_gaussian(kernel_size: int, sigma_x: float, sigma_y: float | None = None,
                                   theta: float = 0.0, beta: float = 1.0) -> np.ndarray:
    """``exp(-0.5 q^beta)``: beta < 1 a sharper peak with heavier tails, beta > 1 a flatter top (beta 1: Gaussian)."""
    q = _quadratic_form(kernel_size, sigma_x, sigma_x if sigma_y is None else sigma_y, theta)
    kernel = np.exp(-0.5 * q ** beta)
    return kernel / kernel.sum()


def bivariate_plateau(kernel_size: int, sigma_x: float, sigma_y: float | None = None, theta: float = 0.0,
                      beta: float = 1.0) -> np.ndarray:
    """``1 / (1 + q^beta)``: a flat top with polynomial tails."""
    q = _quadratic_form(kernel_size, sigma_x, sigma_x if sigma_y is None else sigma_y, theta)
    kernel = 1.0 / (1.0 + q ** beta)
    return kernel / kernel.sum()


def _draw_beta(rng: np.random.Generator, beta_range: Sequence[float]) -> float:
    """Half the time in [min, 1], half in [1, max], as BasicSR."""
    if rng.random() < 0.5:
        return float(rng.uniform(beta_range[0], 1.0))
    return float(rng.uniform(1.0, beta_range[1]))


def random_mixed_kernels(rng: np.random.Generator, kernel_list: Sequence[str], kernel_prob: Sequence[float],
                         kernel_size: int = 21, sigma_range: Sequence[float] = (0.6, 5.0),
                         betag_range: Sequence[float] = (0.5, 8.0), betap_range: Sequence[float] = (0.5, 8.0),
                         rotation_range: Sequence[float] = (-math.pi, math.pi)) -> np.ndarray:
    """One kernel of a type drawn from ``kernel_list`` with ``kernel_prob``, its parameters drawn uniformly.

    Both axes' sigmas come from ``sigma_range`` (BasicSR passes blur_sigma for both); anisotropic types also
    draw a rotation. Draw order: type, sigma_x, [sigma_y, rotation], [beta].
    """
    probs = np.asarray(kernel_prob, dtype=np.float64)
    kind = kernel_list[int(rng.choice(len(kernel_list), p=probs / probs.sum()))]  # numpy wants the sum exact
    if kind not in KERNEL_TYPES:
        raise ValueError(f'kernel_list has an unknown kernel type {kind!r}; choose from {list(KERNEL_TYPES)}')
    sigma_x = float(rng.uniform(sigma_range[0], sigma_range[1]))
    sigma_y, theta = None, 0.0
    if kind.endswith('aniso'):
        sigma_y = float(rng.uniform(sigma_range[0], sigma_range[1]))
        theta = float(rng.uniform(rotation_range[0], rotation_range[1]))
    if kind.startswith('generalized'):
        return bivariate_generalized_gaussian(kernel_size, sigma_x, sigma_y, theta, _draw_beta(rng, betag_range))
    if kind.startswith('plateau'):
        return bivariate_plateau(kernel_size, sigma_x, sigma_y, theta, _draw_beta(rng, betap_range))
    return bivariate_gaussian(kernel_size, sigma_x, sigma_y, theta)


def circular_lowpass_kernel(cutoff: float, kernel_size: int, pad_to: int | None = None) -> np.ndarray:
    """The 2-D sinc ("jinc") filter ``cutoff J1(cutoff r) / (2 pi r)``, normalised; ``cutoff`` in radians (pi max).

    It imitates the ringing and overshoot of real resampling filters. ``pad_to`` (odd, >= kernel_size) centres
    it in a larger zero kernel.
    """
    _check_kernel_size(kernel_size)
    half = kernel_size // 2
    y, x = np.mgrid[-half:half + 1, -half:half + 1].astype(np.float64)
    r = np.sqrt(x ** 2 + y ** 2)
    j1 = torch.special.bessel_j1(torch.from_numpy(cutoff * r)).numpy()
    safe_r = np.where(r == 0, 1.0, r)  # the centre takes the limit cutoff^2 / (4 pi)
    kernel = np.where(r == 0, cutoff ** 2 / (4 * math.pi), cutoff * j1 / (2 * math.pi * safe_r))
    kernel = kernel / kernel.sum()
    if pad_to is not None and pad_to > kernel_size:
        if pad_to % 2 == 0:
            raise ValueError(f'pad_to must be odd, got {pad_to}')
        pad = (pad_to - kernel_size) // 2
        kernel = np.pad(kernel, pad)
    return kernel


# ------------------------------------------------------------------------------------------ batch ops (torch)

def filter2d(img: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Correlate each image of (N, C, H, W) with its own kernel: ``kernel`` (N, k, k), or (k, k) / (1, k, k) for
    all; reflect padding keeps the size (cv2.filter2D's BORDER_REFLECT_101, as BasicSR). One grouped convolution.
    """
    n, c, h, w = img.shape
    if kernel.dim() == 2:
        kernel = kernel.unsqueeze(0)
    k = kernel.shape[-1]
    if kernel.dim() != 3 or kernel.shape[-2] != k or k % 2 == 0:
        raise ValueError(f'filter2d needs odd square kernels (k, k) or (N, k, k), got {tuple(kernel.shape)}')
    if kernel.shape[0] not in (1, n):
        raise ValueError(f'filter2d: {kernel.shape[0]} kernels for a batch of {n} images')
    padded = F.pad(img, (k // 2,) * 4, mode='reflect')
    weight = kernel.to(img.dtype).unsqueeze(1)  # (N or 1, 1, k, k)
    if kernel.shape[0] == 1:
        return F.conv2d(padded.reshape(n * c, 1, h + k - 1, w + k - 1), weight).view(n, c, h, w)
    weight = weight.repeat_interleave(c, dim=0)  # (N*C, 1, k, k): image i's kernel for each of its channels
    return F.conv2d(padded.reshape(1, n * c, h + k - 1, w + k - 1), weight, groups=n * c).view(n, c, h, w)


def _rand(generator: torch.Generator, n: int) -> torch.Tensor:
    """``n`` uniform [0, 1) numbers drawn on the generator's device (float32)."""
    return torch.rand(n, generator=generator, device=generator.device)


def _uniform(generator: torch.Generator, n: int, low: float, high: float, device: torch.device) -> torch.Tensor:
    return (_rand(generator, n).double() * (high - low) + low).float().to(device)


def gaussian_noise(img: torch.Tensor, sigma: torch.Tensor, gray: torch.Tensor, generator: torch.Generator
                   ) -> torch.Tensor:
    """Noise for (N, C, H, W): std ``sigma[i] / 255`` for image i, the same field in every channel where
    ``gray[i]``. Colour and grey fields are both drawn, so the draws do not depend on ``gray``."""
    n, c, h, w = img.shape
    colour = torch.randn((n, c, h, w), generator=generator, device=generator.device, dtype=img.dtype)
    grey = torch.randn((n, 1, h, w), generator=generator, device=generator.device, dtype=img.dtype)
    is_gray = gray.to(generator.device).view(n, 1, 1, 1).bool()
    noise = torch.where(is_gray, grey.expand(n, c, h, w), colour).to(img.device)
    return noise * sigma.to(img.device, img.dtype).view(n, 1, 1, 1) / 255


def _poisson_field(img: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Shot noise of each image, its levels counted as BasicSR does: the 8-bit image is taken as counts on
    ``2^ceil(log2(distinct values))`` levels, so an image with more distinct levels gets relatively less noise."""
    img = torch.clamp((img * 255).round(), 0, 255) / 255
    levels = [2.0 ** math.ceil(math.log2(torch.unique(sample).numel())) for sample in img]
    vals = torch.tensor(levels, dtype=img.dtype, device=img.device).view(-1, 1, 1, 1)
    rates = (img * vals).to(generator.device)
    counts = torch.poisson(rates, generator=generator).to(img.device)
    return counts / vals - img


def poisson_noise(img: torch.Tensor, scale: torch.Tensor, gray: torch.Tensor, generator: torch.Generator
                  ) -> torch.Tensor:
    """Poisson (shot) noise for (N, 3, H, W) times ``scale[i]``; where ``gray[i]`` the noise of the luma
    (ITU-R 601 weights, as torchvision's rgb_to_grayscale) in every channel. Both fields are always drawn."""
    n, c, h, w = img.shape
    luma = (0.2989 * img[:, 0:1] + 0.587 * img[:, 1:2] + 0.114 * img[:, 2:3])
    colour = _poisson_field(img, generator)
    grey = _poisson_field(luma, generator).expand(n, c, h, w)
    is_gray = gray.to(img.device).view(n, 1, 1, 1).bool()
    return torch.where(is_gray, grey, colour) * scale.to(img.device, img.dtype).view(n, 1, 1, 1)


def add_random_noise(img: torch.Tensor, generator: torch.Generator, *, gaussian_prob: float,
                     sigma_range: Sequence[float], poisson_scale_range: Sequence[float], gray_prob: float
                     ) -> torch.Tensor:
    """BasicSR's noise step: Gaussian noise with ``gaussian_prob``, else Poisson (one choice for the batch);
    per image a sigma (or scale) drawn uniformly and grey noise with ``gray_prob``. Result clamped to [0, 1].

    Draw order: Gaussian-or-Poisson, the N sigmas/scales, the N grey coins, the noise.
    """
    n = img.shape[0]
    if _rand(generator, 1).item() < gaussian_prob:
        sigma = _uniform(generator, n, sigma_range[0], sigma_range[1], img.device)
        gray = _rand(generator, n) < gray_prob
        noise = gaussian_noise(img, sigma, gray, generator)
    else:
        scale = _uniform(generator, n, poisson_scale_range[0], poisson_scale_range[1], img.device)
        gray = _rand(generator, n) < gray_prob
        noise = poisson_noise(img, scale, gray, generator)
    return torch.clamp(img + noise, 0, 1)


def resize(img: torch.Tensor, mode: str, *, size: tuple[int, int] | None = None,
           scale_factor: float | None = None) -> torch.Tensor:
    """F.interpolate as BasicSR calls it (align_corners False, no antialiasing); ``mode`` one of RESIZE_MODES."""
    if mode == 'area':
        return F.interpolate(img, size=size, scale_factor=scale_factor, mode='area')
    return F.interpolate(img, size=size, scale_factor=scale_factor, mode=mode, align_corners=False)


def draw_resize_mode(generator: torch.Generator) -> str:
    """One of RESIZE_MODES, each with probability 1/3."""
    return RESIZE_MODES[int(torch.randint(len(RESIZE_MODES), (1,), generator=generator,
                                          device=generator.device).item())]


def random_resize(img: torch.Tensor, generator: torch.Generator, resize_prob: Sequence[float],
                  resize_range: Sequence[float], relative_to: tuple[float, float] | None = None) -> torch.Tensor:
    """BasicSR's random resize: up (factor in [1, max]), down ([min, 1]) or keep with ``resize_prob``, then an
    interpolation mode drawn from RESIZE_MODES; one choice for the whole batch.

    Without ``relative_to`` the batch is scaled by the factor; with it, resized to ``int(h * factor)`` x
    ``int(w * factor)`` of ``relative_to = (h, w)`` (the second degradation's sizes relative to the LR size).
    Draw order: direction, factor (always drawn), mode.
    """
    direction = int(torch.multinomial(torch.tensor(resize_prob, dtype=torch.float64, device=generator.device),
                                      1, generator=generator).item())
    unit = _rand(generator, 1).item()
    factor = (1 + unit * (resize_range[1] - 1), resize_range[0] + unit * (1 - resize_range[0]), 1.0)[direction]
    mode = draw_resize_mode(generator)
    if relative_to is None:
        return resize(img, mode, scale_factor=factor)
    return resize(img, mode, size=(int(relative_to[0] * factor), int(relative_to[1] * factor)))


def _usm_kernel(radius: int, sigma: float) -> torch.Tensor:
    """cv2.getGaussianKernel(radius, sigma): sigma <= 0 means ``0.3 ((radius - 1) / 2 - 1) + 0.8``."""
    if sigma <= 0:
        sigma = 0.3 * ((radius - 1) * 0.5 - 1) + 0.8
    x = torch.arange(radius, dtype=torch.float64) - (radius - 1) / 2
    kernel = torch.exp(-x ** 2 / (2 * sigma ** 2))
    return kernel / kernel.sum()


def _separable_blur(img: torch.Tensor, kernel_1d: torch.Tensor) -> torch.Tensor:
    """filter2d with the outer product of ``kernel_1d`` with itself, as two 1-D passes (51 taps, not 51^2)."""
    n, c, h, w = img.shape
    k = kernel_1d.numel()
    weight = kernel_1d.to(img.device, img.dtype)
    x = F.pad(img.reshape(n * c, 1, h, w), (k // 2,) * 4, mode='reflect')
    x = F.conv2d(x, weight.view(1, 1, k, 1))
    return F.conv2d(x, weight.view(1, 1, 1, k)).view(n, c, h, w)


def usm_sharp(img: torch.Tensor, weight: float = 0.5, radius: int = 50, sigma: float = 0.0,
              threshold: float = 10.0) -> torch.Tensor:
    """Unsharp masking as BasicSR's USMSharp (Real-ESRGAN sharpens the GT it degrades and learns from).

    ``sharp = clip(I + weight (I - blur(I)))``, applied where ``|I - blur(I)| * 255 > threshold`` through a
    blurred (soft) mask; flat regions stay as they are. An even radius is made odd as in BasicSR; the image
    must be larger than half the kernel (reflect padding).
    """
    if radius % 2 == 0:
        radius += 1
    kernel = _usm_kernel(radius, sigma)
    residual = img - _separable_blur(img, kernel)
    mask = (residual.abs() * 255 > threshold).to(img.dtype)
    soft_mask = _separable_blur(mask, kernel)
    sharp = torch.clamp(img + weight * residual, 0, 1)
    return soft_mask * sharp + (1 - soft_mask) * img
