"""Make paired HR/LR folders from HR images, with LR made exactly as MATLAB's ``imresize(hr, 1/s, 'bicubic')``.

Layout written under ``out_root`` (the EDSR benchmark layout, which the options files use)::

    HR/<name>.png                  (``HR_sub/<name>_s001.png`` when cropping sub-images)
    LR_bicubic/X4/<name>.png       (``LR_bicubic/X4_sub/...``)

Two kinds of sets:

- training sets (``mod_crop_hr=True``): HR is cropped top-left to a multiple of every scale (their least common
  multiple, BasicSR's "GTmod12" for 2/3/4), so each HR is exactly ``scale`` times its LR, as BasicSR's training crop
  requires; optionally cut into sub-images (BasicSR's DIV2K recipe) so that a training sample decodes a small file.
- benchmark sets (``mod_crop_hr=False``): HR is copied unchanged and each LR is made from the HR cropped to a multiple
  of its own scale, which reproduces the published LR files pixel for pixel; validation crops the HR to match.

Resumable: finished files are skipped, and every file is written under a temporary name and then renamed, so an
interrupted run never leaves a half-written image behind. A run killed while writing leaves its (hidden) temporary
file; the next run removes it (:mod:`srdistill.utils.partial_files`) and writes what is missing. Existing files are
never replaced unless ``overwrite``.
"""
import math
import os
from functools import partial
from multiprocessing import Pool
from os import path as osp

import cv2
import numpy as np
from tqdm import tqdm

from srdistill.data import image_files
from srdistill.data.image_files import to_uint8
from srdistill.utils.errors import UserError
from srdistill.utils.matlab_imresize import imresize, mod_crop
from srdistill.utils.partial_files import partial_path, remove_stale


def to_training_image(img, path=''):
    """Make any decoded image a uint8 BGR (H, W, 3) training image, deliberately.

    - 16-bit: scaled to 8 bits, ``round(v / 257)`` (65535 -> 255), as training and the metrics are 8-bit;
    - grayscale: replicated to three channels (the networks are RGB);
    - RGBA: the colour channels are kept and alpha is dropped (an SR training pair needs no transparency;
      compositing would invent a background).

    Returns:
        tuple[np.ndarray, list[str]]: The image and notes on each conversion made.
    """
    notes = []
    if img.dtype == np.uint16:
        img = to_uint8(img)
        notes.append('16-bit scaled to 8-bit')
    elif img.dtype != np.uint8:
        raise UserError(f'{path}: unsupported pixel type {img.dtype}; convert it to 8- or 16-bit PNG.')
    if img.ndim == 2 or img.shape[2] == 1:
        img = cv2.cvtColor(img.reshape(img.shape[:2]), cv2.COLOR_GRAY2BGR)
        notes.append('grayscale replicated to 3 channels')
    elif img.shape[2] == 4:
        img = np.ascontiguousarray(img[..., :3])
        notes.append('alpha dropped')
    elif img.shape[2] != 3:
        raise UserError(f'{path}: {img.shape[2]} channels; expected gray, RGB or RGBA.')
    return img, notes


def subimage_origins(length, crop_size, step, thresh_size=0):
    """Top/left positions of BasicSR's sub-image grid along one axis (its ``extract_subimages`` recipe).

    A last crop flush with the far edge is added when more than ``thresh_size`` pixels would be left uncovered.
    """
    origins = list(range(0, length - crop_size + 1, step))
    if origins and length - (origins[-1] + crop_size) > thresh_size:
        origins.append(length - crop_size)
    return origins


def write_image(img, path, overwrite=False):
    """Write ``img`` to ``path`` atomically (temporary name, then rename). Returns False if it existed (skipped)."""
    if osp.exists(path) and not overwrite:
        return False
    os.makedirs(osp.dirname(path), exist_ok=True)
    tmp = partial_path(path)
    if not cv2.imwrite(tmp, img):
        raise UserError(f'could not write {path}: check the folder is writable and the disk is not full.')
    os.replace(tmp, path)
    return True


def _prepare_one(path, out_root, scales, mod_crop_hr, crop_size, step, min_size, keep_channels, overwrite):
    """Worker: write the HR (or its sub-images) and its LR images for one file.

    Returns:
        tuple[int, str | None, list[str]]: Files written, why the file was skipped (or None), conversion notes.

    LR images are made from the whole (mod-cropped) HR image and then cropped, so a sub-image's LR is exactly the
    corresponding part of the full image's LR (as with DIV2K's official LR files), not a resize of the crop with
    mirrored borders.
    """
    img = image_files.read_image(path)
    img, notes = (img, []) if keep_channels else to_training_image(img, path)
    name = osp.splitext(osp.basename(path))[0]
    h, w = img.shape[:2]
    if min(h, w) < max(min_size, crop_size or 0):
        return 0, f'{osp.basename(path)} ({w}x{h}) is smaller than {max(min_size, crop_size or 0)} px', []
    if mod_crop_hr:
        img = mod_crop(img, math.lcm(*scales))
    sub = '_sub' if crop_size else ''
    if crop_size:
        boxes = [(f'{name}_s{i + 1:03d}', y, x) for i, (y, x) in enumerate(
            (y, x) for y in subimage_origins(img.shape[0], crop_size, step)
            for x in subimage_origins(img.shape[1], crop_size, step))]
    else:
        boxes = [(name, 0, 0)]
    size = crop_size or max(img.shape[:2])

    def todo(folder):
        return [(n, y, x) for n, y, x in boxes if overwrite or not osp.exists(osp.join(folder, f'{n}.png'))]

    written = 0
    hr_dir = osp.join(out_root, f'HR{sub}')
    for crop_name, y, x in todo(hr_dir):
        if osp.realpath(osp.join(hr_dir, f'{crop_name}.png')) == osp.realpath(path):
            continue  # a benchmark HR prepared in place is its own output
        written += write_image(img[y:y + size, x:x + size], osp.join(hr_dir, f'{crop_name}.png'), overwrite)
    for s in scales:
        lr_dir = osp.join(out_root, 'LR_bicubic', f'X{s}{sub}')
        missing = todo(lr_dir)
        if missing:
            lr = imresize(mod_crop(img, s), 1 / s)
            for crop_name, y, x in missing:
                crop = lr[y // s:(y + size) // s, x // s:(x + size) // s]
                written += write_image(crop, osp.join(lr_dir, f'{crop_name}.png'), overwrite)
    return written, None, [f'{osp.basename(path)}: {note}' for note in notes]


def prepare_paired_folder(inputs, out_root, scales=(4, ), mod_crop_hr=True, crop_size=None, step=None, min_size=0,
                          keep_channels=False, overwrite=False, workers=None, show_progress=True):
    """Write a paired HR/LR set from HR images (see the module docstring for the layout).

    Args:
        inputs (list[str]): HR image files and/or folders.
        out_root (str): Output folder, e.g. ``datasets/291``.
        scales (tuple[int]): LR scales to write. Default: (4,).
        mod_crop_hr (bool): Crop HR to a multiple of every scale (training sets). False keeps HR as is (benchmarks).
        crop_size (int | None): Cut HR into sub-images of this size (with ``step``). None: whole images.
        step (int | None): Sub-image stride. Default: ``crop_size // 2``. Both must be multiples of every scale.
        min_size (int): Skip (and report) images whose shorter side is below this. Default: 0.
        keep_channels (bool): Keep grayscale/alpha/16-bit as they are (benchmarks); else read as 8-bit BGR.
        overwrite (bool): Replace existing output files. Default: False (they are skipped).
        workers (int | None): Worker processes. Default: the number of CPUs.
        show_progress (bool): Show a progress bar. Default: True.

    Returns:
        dict: ``images`` (inputs used), ``written`` (files written), ``skipped`` (list of reasons), ``notes``
        (conversions made to training images, see :func:`to_training_image`).
    """
    files = image_files.find_images(inputs)
    sub = '_sub' if crop_size else ''
    # folders whose files would differ from an input there (a benchmark HR copied as is may be prepared in place)
    outputs = {osp.realpath(osp.join(out_root, 'LR_bicubic', f'X{s}{sub}')) for s in scales}
    if mod_crop_hr or crop_size:
        outputs.add(osp.realpath(osp.join(out_root, f'HR{sub}')))
    clash = sorted({osp.dirname(osp.realpath(f)) for f in files} & outputs)
    if clash:
        raise UserError(f'the output folder {clash[0]} is also an input folder: preparing there could replace your '
                        'images. Choose another --name or --root.')
    if crop_size is not None:
        step = step or crop_size // 2
        bad = [s for s in scales if crop_size % s or step % s]
        if bad:
            raise UserError(f'--crop-size {crop_size} and --step {step} must be multiples of every scale ({bad} does '
                            'not divide them), so each HR sub-image has an exact LR counterpart.')
    for folder in outputs | {osp.realpath(osp.join(out_root, f'HR{sub}'))}:
        remove_stale(folder)  # temporary files of a run that was killed
    job = partial(_prepare_one, out_root=out_root, scales=tuple(scales), mod_crop_hr=mod_crop_hr, crop_size=crop_size,
                  step=step, min_size=min_size, keep_channels=keep_channels, overwrite=overwrite)
    workers = min(workers or os.cpu_count() or 1, len(files))
    written, skipped, notes = 0, [], []
    bar = tqdm(total=len(files), unit='image', desc=f'Preparing {osp.basename(osp.normpath(out_root))}',
               disable=not show_progress)
    with worker_pool(workers) as pool:
        for n, reason, file_notes in pool.imap(job, files):
            written += n
            notes += file_notes
            if reason:
                skipped.append(reason)
            bar.update(1)
    bar.close()
    return dict(images=len(files) - len(skipped), written=written, skipped=skipped, notes=notes)


def worker_pool(workers):
    """A ``multiprocessing.Pool`` of ``workers`` processes, or for one worker a stand-in that runs in this process."""
    return Pool(workers) if workers > 1 else _InProcess()


class _InProcess:
    """Stand-in for a one-worker Pool (no process start-up cost; exceptions keep their message)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    @staticmethod
    def imap(func, items):
        return map(func, items)


def as_uint8_bgr(rgb):
    """An RGB uint8 array (as scikit-image returns photos) -> BGR uint8 for OpenCV writing."""
    return np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8)[..., ::-1])
