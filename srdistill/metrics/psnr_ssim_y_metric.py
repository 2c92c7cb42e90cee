"""PSNR / SSIM on the Y channel exactly as the published MATLAB super-resolution evaluations compute them.

Why a metric of our own: BasicSR's ``test_y_channel`` keeps Y unrounded and treats a grayscale image as RGB, so its
numbers reproduce no published table; a comparison with the literature needs the published protocol. How each
variant differs, and which pipeline produced the bicubic numbers papers quote, is in ``docs/metrics.md``.

Protocol (SelfExSR ``quant_eval`` and SRCNN's test code, whose bicubic numbers are the published ones):

1. Y channel: MATLAB ``rgb2ycbcr`` on the **uint8** RGB image, i.e.
   ``Y = round(16 + (65.481 R + 128.553 G + 24.966 B) / 255)`` stored as uint8. Y is an integer in [16, 235]; it is
   **rounded before** PSNR/SSIM. A single-channel (grayscale) image, such as Set14 ``bridge``, is its own Y: it is
   neither replicated to RGB nor scaled to the [16, 235] range.
2. Shave ``crop_border`` (= the scale factor) pixels off every side of both Y images.
3. PSNR = ``10 log10(255^2 / MSE)`` on the 0..255 range (float64).
4. SSIM = Wang et al.'s ``ssim_index``: 11x11 Gaussian window with sigma 1.5 (normalised), K1 = 0.01, K2 = 0.03,
   L = 255, 'valid' filtering (no padding, the map is 10 pixels smaller in each dimension), mean of the SSIM map.
5. The per-set number is the mean of the per-image values.

The SR image must already be uint8 (rounded), as BasicSR's ``tensor2img`` returns it. The bicubic baseline of the
published tables is :func:`bicubic_upsample` (MATLAB ``imresize(lr, s, 'bicubic')`` on uint8, rounded after each 1-D
pass) of the published ``LR_bicubic`` files, and the HR cropped top-left to ``LR size x scale``.

:func:`bicubic_y_only` is SRCNN's Y-only pipeline, the source of the bicubic numbers quoted since SRCNN / VDSR.
"""
from __future__ import annotations

import cv2
import numpy as np
from basicsr.utils.registry import METRIC_REGISTRY

from srdistill.utils.matlab_imresize import imresize, mod_crop

__all__ = ['rgb2y', 'bicubic_upsample', 'bicubic_y_only', 'calculate_psnr_y', 'calculate_ssim_y']

# MATLAB rgb2ycbcr Y row in thousandths: Y * 255000 = 4080000 + 65481 R + 128553 G + 24966 B.
_Y_OFFSET_MILLI = 16 * 255 * 1000
_Y_COEFFS_MILLI = (65481, 128553, 24966)  # R, G, B
_Y_DENOM = 255 * 1000

_SSIM_WINDOW = 11
_SSIM_SIGMA = 1.5
_SSIM_C1 = (0.01 * 255) ** 2
_SSIM_C2 = (0.03 * 255) ** 2


def rgb2y(img: np.ndarray) -> np.ndarray:
    """Y channel of MATLAB ``rgb2ycbcr`` for a uint8 image, rounded to an integer as MATLAB's uint8 result is.

    ``Y = round(16 + (65.481 R + 128.553 G + 24.966 B) / 255)``, rounding half up. The sum is evaluated in exact
    integer arithmetic. 194 of the 2^24 colours are exact ties (e.g. RGB (0, 204, 68) -> 125.5), where MATLAB's
    floating-point evaluation may land just below .5 and give one level less; 58 of the 15.1M pixels of the Set5 /
    Set14 HR and bicubic images are such ties, which changes no published digit.

    Args:
        img (np.ndarray): uint8 image, (H, W, 3) in BGR channel order (OpenCV / BasicSR ``tensor2img``), or a
            grayscale (H, W) or (H, W, 1) image.

    Returns:
        np.ndarray: (H, W) float64 Y with integer values in [16, 235] for a colour image. A grayscale image is its
        own Y: its values are returned unchanged (as float64, (H, W)), not mapped to [16, 235].

    Raises:
        ValueError: If ``img`` is not uint8 or not of shape (H, W), (H, W, 1) or (H, W, 3).
    """
    img = np.asarray(img)
    if img.dtype != np.uint8:
        raise ValueError(f'rgb2y expects a uint8 image, got dtype {img.dtype}')
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 2:
        return img.astype(np.float64)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f'rgb2y expects an (H, W) gray or (H, W, 3) BGR image, got shape {img.shape}')
    b, g, r = (img[:, :, c].astype(np.int64) for c in range(3))
    num = _Y_OFFSET_MILLI + _Y_COEFFS_MILLI[0] * r + _Y_COEFFS_MILLI[1] * g + _Y_COEFFS_MILLI[2] * b
    return ((num + _Y_DENOM // 2) // _Y_DENOM).astype(np.float64)  # round half up, exact


def bicubic_upsample(lr: np.ndarray, scale: int) -> np.ndarray:
    """MATLAB ``imresize(lr, scale, 'bicubic')`` of a uint8 LR image: the bicubic baseline of the published tables.

    Thin wrapper on :func:`srdistill.utils.matlab_imresize.imresize`: Keys cubic kernel (a = -0.5), symmetric border
    extension, height then width, result rounded to uint8 after each 1-D pass (as MATLAB does for uint8 input).

    Args:
        lr (np.ndarray): uint8 LR image, (h, w) or (h, w, C).
        scale (int): Positive integer upscaling factor.

    Returns:
        np.ndarray: uint8 image of shape (h * scale, w * scale[, C]).

    Raises:
        ValueError: If ``lr`` is not uint8 or ``scale`` is not a positive integer (other errors from ``imresize``).
    """
    lr = np.asarray(lr)
    if lr.dtype != np.uint8:
        raise ValueError(f'bicubic_upsample expects a uint8 image, got dtype {lr.dtype}')
    if isinstance(scale, bool) or int(scale) != scale or scale <= 0:
        raise ValueError(f'bicubic_upsample scale must be a positive integer, got {scale}')
    return imresize(lr, int(scale))


def bicubic_y_only(hr: np.ndarray, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """SRCNN's bicubic baseline, the one behind the bicubic numbers quoted since SRCNN/VDSR.

    The rounded uint8 Y of the HR (cropped to a multiple of ``scale``) is resized down and back up by MATLAB bicubic
    **in floating point, on Y alone**, then rounded to uint8. It never sees an RGB LR image, so it is not what a
    network fed the published LR files is compared against (:func:`bicubic_upsample` is); it is the number papers
    print. With this module's metric it gives Set5 33.66/0.9299, 30.39/0.8682, 28.42/0.8104 (x2/x3/x4) and Set14
    30.23/0.8687, 27.54/0.7736, 26.00/0.7019.

    Args:
        hr (np.ndarray): uint8 HR image, BGR (H, W, 3) or gray (H, W).
        scale (int): Scale factor.

    Returns:
        tuple[np.ndarray, np.ndarray]: (bicubic Y, HR Y), both uint8 (H', W'), to be scored as gray images.
    """
    hr_y = mod_crop(rgb2y(hr), scale)
    up = imresize(imresize(hr_y / 255.0, 1 / scale), scale)
    return np.clip(np.floor(up * 255.0 + 0.5), 0, 255).astype(np.uint8), hr_y.astype(np.uint8)


def _prepare(img: np.ndarray, img2: np.ndarray, crop_border: int, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Validate a pair, convert both to Y (:func:`rgb2y`) and shave ``crop_border`` pixels per side.

    Args:
        img (np.ndarray): uint8 (H, W, 3) BGR or (H, W) gray image.
        img2 (np.ndarray): Image of the same shape and dtype as ``img``.
        crop_border (int): Pixels removed at each border (>= 0).
        name (str): Calling metric, for error messages.

    Returns:
        tuple[np.ndarray, np.ndarray]: The two shaved (H - 2 c, W - 2 c) float64 Y images.

    Raises:
        ValueError: On different shapes, non-uint8 input, an unsupported shape, a negative or non-integer
            ``crop_border``, or a border that leaves nothing.
    """
    img, img2 = np.asarray(img), np.asarray(img2)
    if img.shape != img2.shape:
        raise ValueError(f'{name}: image shapes differ: {img.shape} vs {img2.shape}')
    if img.dtype != np.uint8 or img2.dtype != np.uint8:
        raise ValueError(f'{name}: expects uint8 images (round the SR output first), got {img.dtype} and '
                         f'{img2.dtype}')
    if isinstance(crop_border, bool) or int(crop_border) != crop_border or crop_border < 0:
        raise ValueError(f'{name}: crop_border must be an integer >= 0, got {crop_border}')
    c = int(crop_border)
    h, w = img.shape[:2]
    if h <= 2 * c or w <= 2 * c:
        raise ValueError(f'{name}: crop_border {c} leaves nothing of a {h}x{w} image')
    y, y2 = rgb2y(img), rgb2y(img2)
    if c:
        y, y2 = y[c:-c, c:-c], y2[c:-c, c:-c]
    return y, y2


@METRIC_REGISTRY.register()
def calculate_psnr_y(img: np.ndarray, img2: np.ndarray, crop_border: int, **kwargs) -> float:
    """PSNR (dB) on the rounded MATLAB Y channel with ``crop_border`` pixels shaved, as in the published SR tables.

    Args:
        img (np.ndarray): uint8 image, (H, W, 3) BGR or (H, W) gray (e.g. the SR output after ``tensor2img``).
        img2 (np.ndarray): uint8 reference image of the same shape.
        crop_border (int): Pixels shaved at each border of the Y images (the scale factor in the published protocol).
        **kwargs: Ignored (BasicSR passes e.g. ``input_order``, ``test_y_channel``, ``better``).

    Returns:
        float: ``10 log10(255^2 / MSE)``; ``inf`` for identical Y images.

    Raises:
        ValueError: On mismatched shapes or invalid input, see :func:`rgb2y`.
    """
    y, y2 = _prepare(img, img2, crop_border, 'calculate_psnr_y')
    mse = float(np.mean((y - y2) ** 2))
    if mse == 0:
        return float('inf')
    return float(10.0 * np.log10(255.0 ** 2 / mse))


def _gaussian_window() -> np.ndarray:
    """Normalised 1-D Gaussian (size 11, sigma 1.5); its outer product is MATLAB ``fspecial('gaussian', 11, 1.5)``.

    Returns:
        np.ndarray: (11,) float64 weights summing to 1.
    """
    x = np.arange(_SSIM_WINDOW, dtype=np.float64) - (_SSIM_WINDOW - 1) / 2
    g = np.exp(-x * x / (2 * _SSIM_SIGMA ** 2))
    return g / g.sum()


def _ssim_map_mean(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM of two float64 images, Wang et al.'s ``ssim_index`` with 'valid' filtering.

    Args:
        a (np.ndarray): (H, W) float64 image on the 0..255 scale, H and W >= 11.
        b (np.ndarray): Same shape as ``a``.

    Returns:
        float: Mean of the (H - 10, W - 10) SSIM map.
    """
    g = _gaussian_window()
    r = _SSIM_WINDOW // 2

    def filt(x: np.ndarray) -> np.ndarray:
        # Separable direct filtering; the border rows/columns (where padding would enter) are cut -> 'valid'.
        return cv2.sepFilter2D(x, cv2.CV_64F, g, g, borderType=cv2.BORDER_REFLECT)[r:-r, r:-r]

    mu1, mu2 = filt(a), filt(b)
    mu1_sq, mu2_sq, mu1_mu2 = mu1 * mu1, mu2 * mu2, mu1 * mu2
    sigma1_sq = filt(a * a) - mu1_sq
    sigma2_sq = filt(b * b) - mu2_sq
    sigma12 = filt(a * b) - mu1_mu2
    ssim_map = ((2 * mu1_mu2 + _SSIM_C1) * (2 * sigma12 + _SSIM_C2)) / (
        (mu1_sq + mu2_sq + _SSIM_C1) * (sigma1_sq + sigma2_sq + _SSIM_C2))
    return float(ssim_map.mean())


@METRIC_REGISTRY.register()
def calculate_ssim_y(img: np.ndarray, img2: np.ndarray, crop_border: int, **kwargs) -> float:
    """SSIM on the rounded MATLAB Y channel with ``crop_border`` pixels shaved, as in the published SR tables.

    Wang et al.'s ``ssim_index``: 11x11 Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03, L = 255, 'valid'
    filtering, mean of the SSIM map.

    Args:
        img (np.ndarray): uint8 image, (H, W, 3) BGR or (H, W) gray (e.g. the SR output after ``tensor2img``).
        img2 (np.ndarray): uint8 reference image of the same shape.
        crop_border (int): Pixels shaved at each border of the Y images (the scale factor in the published protocol).
        **kwargs: Ignored (BasicSR passes e.g. ``input_order``, ``test_y_channel``, ``better``).

    Returns:
        float: Mean SSIM, at most 1.0.

    Raises:
        ValueError: On mismatched shapes or invalid input, or if less than 11x11 pixels remain after shaving.
    """
    y, y2 = _prepare(img, img2, crop_border, 'calculate_ssim_y')
    if min(y.shape) < _SSIM_WINDOW:
        raise ValueError(f'calculate_ssim_y: needs at least {_SSIM_WINDOW}x{_SSIM_WINDOW} pixels after shaving, '
                         f'got {y.shape[0]}x{y.shape[1]}')
    return _ssim_map_mean(y, y2)
