"""Super-resolve one image of any common kind, keeping its kind: grayscale stays grayscale, RGBA keeps an alpha
channel (upscaled separately, by MATLAB bicubic), 16-bit stays 16-bit.

Memory: tiles are stitched straight into the preallocated 8/16-bit output, so a tiled run holds the LR image, the
output and one tile's work (its float input, the network's activations, its float output); no float copy of the whole
image exists (docs/infer_memory.md has the measurements).
"""
import numpy as np

from srdistill.utils.errors import UserError
from srdistill.utils.matlab_imresize import imresize
from srdistill.utils.tiling import tile_windows

_MAX = {np.dtype(np.uint8): 255, np.dtype(np.uint16): 65535}
_ROWS = 256  # rows per float64 step when quantising and when upscaling alpha: bounded temporaries, same values


def _lr_batch(img, gray, top):
    """float32 RGB (1, 3, h, w) in [0, 1] of a uint8/uint16 gray (h, w) or BGR(A) (h, w, C) window."""
    rgb = np.repeat(img[..., None], 3, axis=2) if gray else img[..., 2::-1]
    return np.ascontiguousarray((rgb.astype(np.float32) / top).transpose(2, 0, 1)[None])


def _quantise_into(dst, sr, top, gray):
    """Write the float RGB (3, H, W) ``sr`` into ``dst`` (gray (H, W) or BGR (H, W, 3), uint8/uint16), rounded.

    float64 as before tiling moved here (identical values), a few rows at a time so no whole-image float64 exists.
    """
    for r in range(0, sr.shape[1], _ROWS):
        rows = np.floor(sr[:, r:r + _ROWS].transpose(1, 2, 0).astype(np.float64) * top + 0.5).clip(0, top)
        dst[r:r + _ROWS] = np.floor(rows.mean(axis=2) + 0.5) if gray else rows[..., ::-1]


def upscale_alpha(alpha, scale, rows=_ROWS, out=None):
    """MATLAB bicubic ``imresize(alpha, scale)`` of an integer (H, W) channel, computed in strips of ``rows`` rows.

    Each strip is resized with 4 LR rows of context on either side (the bicubic kernel reaches 2 and a strip's own
    mirrored border 2 more), then cropped, so the result equals resizing the whole channel while its float64
    temporaries stay strip-sized.

    Args:
        alpha (np.ndarray): uint8 or uint16, (H, W).
        scale (int): Upscaling factor.
        rows (int): LR rows per strip. Default: 256.
        out (np.ndarray | None): Where to write the (H * scale, W * scale) result (e.g. the alpha plane of the
            output image). Default: a new array.

    Returns:
        np.ndarray: ``out``.
    """
    h = alpha.shape[0]
    out = np.empty((h * scale, alpha.shape[1] * scale), alpha.dtype) if out is None else out
    for r in range(0, h, rows):
        a, b = max(r - 4, 0), min(r + rows + 4, h)
        strip = imresize(np.ascontiguousarray(alpha[a:b]), scale)
        out[r * scale:min(r + rows, h) * scale] = strip[(r - a) * scale:(min(r + rows, h) - a) * scale]
    return out


def upscale_image(runner, img, tile=None, overlap=32):
    """SR of ``img`` as ``cv2.imread(path, cv2.IMREAD_UNCHANGED)`` returns it.

    Args:
        runner (callable): ``runner(batch)``: float32 RGB (1, 3, h, w) in [0, 1] -> float32 (1, 3, h * s, w * s) in
            [0, 1], with ``runner.scale`` = s. Called once per tile (see :func:`~srdistill.utils.tiling.tile_windows`).
        img (np.ndarray): uint8 or uint16; (H, W) gray, (H, W, 3) BGR or (H, W, 4) BGRA.
        tile (int | None): LR tile size (bounded memory). Default: None.
        overlap (int): Tile overlap in LR pixels. Default: 32.

    Returns:
        np.ndarray: The SR image, same dtype and channels as ``img``.
    """
    if img.dtype not in _MAX:
        raise UserError(f'unsupported pixel type {img.dtype} (8- and 16-bit images are supported).')
    top = _MAX[img.dtype]
    gray = img.ndim == 2 or img.shape[2] == 1
    if gray:
        img = img.reshape(img.shape[:2])
    elif img.shape[2] not in (3, 4):
        raise UserError(f'{img.shape[2]} channels; expected gray, RGB or RGBA.')
    h, w, s = img.shape[0], img.shape[1], runner.scale
    out = np.empty((h * s, w * s) if gray else (h * s, w * s, img.shape[2]), img.dtype)
    for (y0, y1, x0, x1), (t, b, left, right) in tile_windows(h, w, tile, overlap):
        sr = runner(_lr_batch(img[y0:y1, x0:x1], gray, top))[0]
        kept = sr[:, (t - y0) * s:(b - y0) * s, (left - x0) * s:(right - x0) * s]
        dst = out[t * s:b * s, left * s:right * s]
        _quantise_into(dst if gray else dst[..., :3], kept, top, gray)
        del sr, kept  # the next tile's output is allocated before this name would be rebound
    if not gray and img.shape[2] == 4:
        upscale_alpha(img[..., 3], s, out=out[..., 3])
    return out
