"""Super-resolve one image of any common kind, keeping its kind: grayscale stays grayscale, RGBA keeps an alpha
channel (upscaled separately, by MATLAB bicubic), 16-bit stays 16-bit."""
import numpy as np

from srdistill.utils.errors import UserError
from srdistill.utils.matlab_imresize import imresize

_MAX = {np.dtype(np.uint8): 255, np.dtype(np.uint16): 65535}


def upscale_image(runner, img, tile=None, overlap=32):
    """SR of ``img`` as ``cv2.imread(path, cv2.IMREAD_UNCHANGED)`` returns it.

    Args:
        runner (callable): ``runner(batch, tile, overlap)``: float32 RGB (1, 3, h, w) in [0, 1] -> (1, 3, H, W).
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
        rgb = np.repeat(img.reshape(img.shape[:2])[..., None], 3, axis=2)
    elif img.shape[2] in (3, 4):
        rgb = img[..., 2::-1]
    else:
        raise UserError(f'{img.shape[2]} channels; expected gray, RGB or RGBA.')
    batch = np.ascontiguousarray((rgb.astype(np.float32) / top).transpose(2, 0, 1)[None])
    sr = runner(batch, tile, overlap)[0].transpose(1, 2, 0)
    out = np.floor(sr.astype(np.float64) * top + 0.5).clip(0, top)
    if gray:
        return np.floor(out.mean(axis=2) + 0.5).astype(img.dtype)
    out = out[..., ::-1].astype(img.dtype)
    if img.shape[2] == 4:
        scale = sr.shape[0] // img.shape[0]
        alpha = imresize(np.ascontiguousarray(img[..., 3]), scale)
        out = np.concatenate([out, alpha[..., None]], axis=2)
    return np.ascontiguousarray(out)
