"""Exact NumPy re-implementation of MATLAB's ``imresize(img, scale, 'bicubic')``.

The benchmark LR images published for Set5, Set14, BSD100, Urban100, DIV2K, ... were made in MATLAB with
``imresize(mod_crop(hr, s), 1/s, 'bicubic')`` on uint8 images. This module reproduces those files pixel for pixel:

* Keys cubic kernel (a = -0.5), width 4; when downscaling with antialiasing the kernel is stretched by ``1/scale``.
* Per-output weights and indices exactly as MATLAB's ``contributions()`` (including the symmetric border extension and
  the removal of all-zero weight columns).
* Dimensions are resized one after the other, in ascending order of scale (height first on ties).
* For integer inputs the result is rounded (half away from zero) and saturated to the integer type after EACH 1-D pass,
  as MATLAB's ``imresizemex`` does. Keeping floats between the passes changes some pixels by one grey level.

All arithmetic is done in float64.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ['imresize', 'mod_crop', 'bicubic_downsample']

_KERNEL_WIDTH = 4.0
_INT_MAX = {np.dtype(np.uint8): 255, np.dtype(np.uint16): 65535}
_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys cubic convolution kernel with a = -0.5, as in MATLAB's ``imresize``.

    Args:
        x (np.ndarray): Distances, any shape, float64.

    Returns:
        np.ndarray: Kernel values, same shape as ``x``, float64.
    """
    absx = np.abs(x)
    absx2 = absx * absx
    absx3 = absx2 * absx
    inner = (1.5 * absx3 - 2.5 * absx2 + 1.0) * (absx <= 1)
    outer = (-0.5 * absx3 + 2.5 * absx2 - 4.0 * absx + 2.0) * ((absx > 1) & (absx <= 2))
    return inner + outer


def _contributions(in_len: int, out_len: int, scale: float, antialias: bool) -> tuple[np.ndarray, np.ndarray]:
    """Interpolation weights and source indices for one dimension, as MATLAB's ``contributions()``.

    Args:
        in_len (int): Input length along the dimension.
        out_len (int): Output length along the dimension.
        scale (float): Scale factor along the dimension (output / input).
        antialias (bool): Stretch the kernel when downscaling (MATLAB's default ``'Antialiasing', true``).

    Returns:
        tuple[np.ndarray, np.ndarray]: ``weights`` of shape (out_len, P), float64, each row summing to 1, and
        ``indices`` of shape (out_len, P), int64, 0-based indices into the input (already mirrored at the borders).
    """
    kernel_width = _KERNEL_WIDTH
    if scale < 1 and antialias:
        def kernel(v: np.ndarray) -> np.ndarray:
            return scale * _cubic(scale * v)

        kernel_width = kernel_width / scale
    else:
        kernel = _cubic

    x = np.arange(1, out_len + 1, dtype=np.float64)  # 1-based output coordinates
    u = x / scale + 0.5 * (1 - 1 / scale)  # corresponding 1-based input coordinates
    left = np.floor(u - kernel_width / 2)
    taps = int(math.ceil(kernel_width)) + 2
    indices = left[:, None] + np.arange(taps, dtype=np.float64)[None, :]  # 1-based
    weights = kernel(u[:, None] - indices)
    weights = weights / weights.sum(axis=1, keepdims=True)

    # Symmetric (mirror) extension: aux = [1..in_len, in_len..1]; stored 0-based here.
    aux = np.concatenate([np.arange(in_len), np.arange(in_len - 1, -1, -1)])
    indices = aux[np.mod(indices.astype(np.int64) - 1, 2 * in_len)]

    keep = np.any(weights != 0, axis=0)
    return weights[:, keep], indices[:, keep]


def _round_to_int(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Round half away from zero and saturate to an unsigned integer type (MATLAB's conversion semantics).

    Args:
        x (np.ndarray): float64 values, any shape.
        dtype (np.dtype): Target unsigned integer dtype (uint8 or uint16).

    Returns:
        np.ndarray: Same shape as ``x``, ``dtype``.
    """
    floor = np.floor(x)
    rounded = floor + (x - floor >= 0.5)  # exact half-up; negatives are clipped to 0 anyway
    return np.clip(rounded, 0, _INT_MAX[dtype]).astype(dtype)


def _resize_along_dim(img: np.ndarray, dim: int, weights: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Apply one 1-D resampling pass along ``dim`` (0 = height, 1 = width).

    Args:
        img (np.ndarray): Input of shape (H, W, C), any numeric dtype.
        dim (int): Dimension to resample, 0 or 1.
        weights (np.ndarray): (out_len, P) float64 weights.
        indices (np.ndarray): (out_len, P) 0-based source indices.

    Returns:
        np.ndarray: float64 array with ``img.shape[dim]`` replaced by ``out_len``.
    """
    src = np.moveaxis(img, dim, 0)
    out = None
    for k in range(weights.shape[1]):  # accumulate tap by tap, in MATLAB's order
        term = src[indices[:, k]] * weights[:, k, None, None]
        out = term if out is None else out + term
    return np.moveaxis(out, 0, dim)


def imresize(
    img: np.ndarray,
    scale: float | None = None,
    output_shape: tuple[int, int] | None = None,
    antialias: bool = True,
) -> np.ndarray:
    """MATLAB imresize(img, scale, 'bicubic'). uint8 in -> uint8 out (rounded after each pass); float in -> float64 out.

    Exactly one of ``scale`` and ``output_shape`` must be given. With ``scale`` the output size is
    ``ceil(in_len * scale)`` per dimension and both dimensions use ``scale``; with ``output_shape`` the scale of each
    dimension is ``output_shape[i] / in_shape[i]`` (as MATLAB). Dimensions are resized in ascending order of scale,
    height first on ties. Channels are processed independently.

    Args:
        img (np.ndarray): Image of shape (H, W) or (H, W, C) with any C >= 1. dtype uint8, uint16, float32 or
            float64.
        scale (float | None): Scale factor (> 0) applied to H and W, e.g. ``1/4`` to downscale by 4. Default None.
        output_shape (tuple[int, int] | None): Target (H, W) (both > 0), instead of ``scale``. Default None.
        antialias (bool): Stretch the kernel when downscaling, as MATLAB's default. Default True.

    Returns:
        np.ndarray: Resized image of shape (H', W') or (H', W', C). uint8 for uint8 input and uint16 for uint16
        input (rounded half away from zero and saturated after each of the two 1-D passes); float64 for float input
        (no rounding, no clipping).

    Raises:
        ValueError: If ``img`` is not 2-D or 3-D, has an unsupported dtype, if both or neither of ``scale`` and
            ``output_shape`` are given, or if the scale / output shape is not positive.
    """
    img = np.asarray(img)
    if img.ndim not in (2, 3):
        raise ValueError(f'imresize expects a 2-D (H, W) or 3-D (H, W, C) array, got shape {img.shape}')
    dtype = img.dtype
    if dtype not in _INT_MAX and dtype not in _FLOAT_DTYPES:
        raise ValueError(f'imresize supports dtypes uint8, uint16, float32 and float64, got {dtype}')
    if (scale is None) == (output_shape is None):
        raise ValueError('imresize needs exactly one of scale and output_shape, got '
                         + ('both' if scale is not None else 'neither'))
    if img.shape[0] == 0 or img.shape[1] == 0:
        raise ValueError(f'imresize got an empty image of shape {img.shape}')

    in_shape = img.shape[:2]
    if scale is not None:
        scale = float(scale)
        if not scale > 0 or not math.isfinite(scale):
            raise ValueError(f'scale must be a finite number > 0, got {scale}')
        scales = (scale, scale)
        out_shape = tuple(int(math.ceil(n * scale)) for n in in_shape)
    else:
        if len(output_shape) != 2:
            raise ValueError(f'output_shape must be (h, w), got {output_shape}')
        out_shape = tuple(int(n) for n in output_shape)
        if min(out_shape) <= 0:
            raise ValueError(f'output_shape must be positive, got {output_shape}')
        scales = (out_shape[0] / in_shape[0], out_shape[1] / in_shape[1])

    squeeze = img.ndim == 2
    out = img[:, :, None] if squeeze else img
    # MATLAB: [~, order] = sort(scale) -- stable, so height goes first when the scales are equal.
    order = sorted(range(2), key=lambda d: scales[d])
    for dim in order:
        weights, indices = _contributions(in_shape[dim], out_shape[dim], scales[dim], antialias)
        out = _resize_along_dim(out, dim, weights, indices)
        if dtype in _INT_MAX:
            out = _round_to_int(out, dtype)
    if dtype in _FLOAT_DTYPES:
        out = out.astype(np.float64, copy=False)
    return out[:, :, 0] if squeeze else out


def mod_crop(img: np.ndarray, scale: int) -> np.ndarray:
    """Crop H and W (top-left anchored) to multiples of scale.

    Args:
        img (np.ndarray): Image of shape (H, W) or (H, W, C), any dtype.
        scale (int): Positive integer; H and W are cropped down to multiples of it.

    Returns:
        np.ndarray: View of ``img`` of shape (H - H % scale, W - W % scale[, C]), same dtype.

    Raises:
        ValueError: If ``img`` is not 2-D or 3-D or ``scale`` is not a positive integer.
    """
    if img.ndim not in (2, 3):
        raise ValueError(f'mod_crop expects a 2-D (H, W) or 3-D (H, W, C) array, got shape {img.shape}')
    if isinstance(scale, bool) or int(scale) != scale or scale <= 0:
        raise ValueError(f'mod_crop scale must be a positive integer, got {scale}')
    scale = int(scale)
    h, w = img.shape[:2]
    return img[:h - h % scale, :w - w % scale]


def bicubic_downsample(hr: np.ndarray, scale: int) -> np.ndarray:
    """The published LR recipe: imresize(mod_crop(hr, scale), 1/scale) on a uint8 image.

    Args:
        hr (np.ndarray): HR image of shape (H, W) or (H, W, C), normally uint8 (uint16 / float also accepted, see
            :func:`imresize`).
        scale (int): Positive integer downscaling factor, e.g. 2, 3 or 4.

    Returns:
        np.ndarray: LR image of shape (H // scale, W // scale[, C]), same dtype as ``hr`` for integer input.

    Raises:
        ValueError: On invalid input, see :func:`mod_crop` and :func:`imresize`.
    """
    cropped = mod_crop(hr, scale)
    return imresize(cropped, 1 / int(scale))
