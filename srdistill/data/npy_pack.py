"""Pack an image folder into uncompressed ``.npy`` arrays, which :class:`PairedNpyDataset` crops without decoding.

Decoding is what a training sample costs: a whole PNG is decoded, and the training crop then keeps a 96x96 patch of
it (docs/speed.md, "Data loading"). A ``.npy`` file holds the decoded pixels, so the dataset memory-maps it and reads
only the patch's rows; the operating system's page cache is shared by all loader workers. The price is disk space:
raw pixels, 3 bytes per pixel (docs/experiments.md, "Measurements behind the code").
"""
import os
from functools import partial
from os import path as osp

import numpy as np
from basicsr.utils import imfrombytes
from tqdm import tqdm

from srdistill.data.image_files import check_complete, check_distinct_outputs, list_images
from srdistill.data.prepare import worker_pool
from srdistill.utils.errors import UserError
from srdistill.utils.partial_files import partial_path, remove_stale

NPY_SUFFIX = '_npy'


def npy_folder(folder):
    """The ``.npy`` folder packed from image folder ``folder``: ``datasets/291/HR`` -> ``datasets/291/HR_npy``."""
    return folder.rstrip('/' + os.sep) + NPY_SUFFIX


def read_color(path):
    """An image decoded by BasicSR's ``imfrombytes(flag='color')``, as ``PairedImageDataset`` reads it: uint8 BGR,
    (H, W, 3).

    Raises:
        UserError: Empty, truncated or undecodable file.
    """
    check_complete(path)
    with open(path, 'rb') as f:
        img = imfrombytes(f.read(), flag='color')
    if img is None:
        raise UserError(f'{path} cannot be decoded as an image. Remove it or re-create it.')
    return img


def _pack_one(name, folder, out, overwrite):
    """Worker: ``folder/name`` -> ``out/<base name>.npy``, written atomically. Returns 1 if written, 0 if kept."""
    target = osp.join(out, osp.splitext(name)[0] + '.npy')
    if osp.exists(target) and not overwrite:
        return 0
    img = read_color(osp.join(folder, name))
    tmp = partial_path(target)
    try:
        np.save(tmp, img)
    except OSError as err:
        raise UserError(f'could not write {target} ({err.strerror}): check the folder is writable and the disk is '
                        'not full.') from None
    os.replace(tmp, target)
    return 1


def pack_npy(folder, out=None, overwrite=False, workers=None, show_progress=True):
    """Write every image of ``folder`` as ``<out>/<base name>.npy`` (uint8 BGR, as the PNG dataset decodes it).

    Resumable: existing arrays are kept unless ``overwrite``; each is written under a temporary name and renamed, so an
    interrupted run leaves no half-written array (and the next run removes a killed run's temporary files).

    Args:
        folder (str): Image folder, e.g. ``datasets/291/HR``.
        out (str | None): Output folder. Default: :func:`npy_folder` of ``folder``.
        overwrite (bool): Replace existing arrays. Default: False.
        workers (int | None): Processes. Default: all CPUs.
        show_progress (bool): Show a progress bar. Default: True.

    Returns:
        str: The output folder.

    Raises:
        UserError: A bad image (named), two images with the same base name, or an output inside the input.
    """
    out = out or npy_folder(folder)
    if osp.realpath(out) == osp.realpath(folder):
        raise UserError(f'the .npy output folder {out} is the image folder itself. Choose another output.')
    names = list_images(folder, folder)
    check_distinct_outputs([osp.join(folder, n) for n in names], lambda f: osp.splitext(osp.basename(f))[0] + '.npy')
    os.makedirs(out, exist_ok=True)
    remove_stale(out)  # temporary files of a run that was killed
    job = partial(_pack_one, folder=folder, out=out, overwrite=overwrite)
    workers = min(workers or os.cpu_count() or 1, len(names))
    bar = tqdm(total=len(names), unit='image', desc=f'Packing {osp.basename(out)}', disable=not show_progress)
    with worker_pool(workers) as pool:
        for _ in pool.imap(job, names):
            bar.update(1)
    bar.close()
    return out
