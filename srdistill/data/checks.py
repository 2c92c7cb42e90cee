"""Up-front checks of paired image folders, so bad data fails in the main process with one clear message.

BasicSR finds these problems late (an ``assert`` while building the dataset, or a ``ValueError`` inside a data-loader
worker after the experiment folder was created). These checks read file names and image headers, and checksum PNG
files without decoding them (:func:`check_png_checksums`); what they cannot see (a damaged JPEG, a PNG damaged with
its checksums recomputed) is named by the dataset when it fails to decode (:mod:`srdistill.data.decode_guard`).
"""
import zlib
from os import path as osp

import numpy as np
from PIL import Image, UnidentifiedImageError

from srdistill.data.image_files import IMAGE_EXTENSIONS, check_complete, list_images, listing
from srdistill.utils.errors import UserError


def check_png_checksums(path):
    """Raise if a PNG file's chunks fail their CRC-32: damaged pixel data, which a header and end-chunk check miss.

    Checksums the file without decoding it (the chunks' CRCs, ``zlib.crc32``), a small fraction of what decoding
    costs (docs/experiments.md, "Measurements behind the code"). Other formats are not read.

    Raises:
        UserError: A chunk that fails its checksum or runs past the end of the file.
    """
    with open(path, 'rb') as f:
        data = memoryview(f.read())
    if data[:8] != b'\x89PNG\r\n\x1a\n':
        return
    pos = 8
    while pos + 12 <= len(data):
        length = int.from_bytes(data[pos:pos + 4], 'big')
        kind = bytes(data[pos + 4:pos + 8]).decode('latin-1')
        end = pos + 8 + length
        if end + 4 > len(data):
            break
        if zlib.crc32(data[pos + 4:end]) != int.from_bytes(data[end:end + 4], 'big'):
            raise UserError(f'{path} is damaged: its PNG chunk {kind} at byte {pos} fails its checksum. Re-create or '
                            're-download it.')
        if kind == 'IEND':
            return
        pos = end + 4
    raise UserError(f'{path} is damaged: its PNG chunks run past the end of the file at byte {pos}. Re-create or '
                    're-download it.')


def image_size(path):
    """(height, width) of an image from its header, after :func:`check_complete` and :func:`check_png_checksums`.

    Raises:
        UserError: Empty, truncated, damaged, or a file no image reader recognises.
    """
    check_complete(path)
    check_png_checksums(path)
    try:
        with Image.open(path) as img:
            width, height = img.size
    except (UnidentifiedImageError, OSError) as err:
        raise UserError(f'{path} cannot be read as an image ({err}). Remove it or re-create it.') from None
    return height, width


def npy_image_size(path):
    """(height, width) of an image packed as ``.npy`` (uint8, H x W x 3), from the array header only.

    Raises:
        UserError: Not a ``.npy`` file, truncated, or not a uint8 3-channel image array.
    """
    try:
        with open(path, 'rb') as f:
            version = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                np.lib.format.read_array_header_2_0
            shape, _, dtype = read_header(f)
            data_start = f.tell()
    except (ValueError, OSError, SyntaxError) as err:
        raise UserError(f'{path} is not a .npy array ({err}). Re-create it with `tools/prepare_data.py ... '
                        '--npy --overwrite`.') from None
    if dtype != np.uint8 or len(shape) != 3 or shape[2] != 3:
        raise UserError(f'{path} holds a {dtype} array of shape {shape}, not an 8-bit 3-channel image (H, W, 3). '
                        'Re-create it with `tools/prepare_data.py ... --npy --overwrite`.')
    if osp.getsize(path) < data_start + int(np.prod(shape)):
        raise UserError(f'{path} is truncated (shorter than its header says). Re-create it with '
                        '`tools/prepare_data.py ... --npy --overwrite`.')
    return shape[0], shape[1]


def check_meta_info(meta_info_file, folders, role):
    """Check a BasicSR meta-info file (first column: HR file names) names only files present in ``folders``.

    Args:
        meta_info_file (str): The text file.
        folders (list[str]): Folders every named file must be in (the HR folder; LR too when names match).
        role (str): The options path, for messages.

    Returns:
        list[str]: The names.

    Raises:
        UserError: Missing meta-info file, empty, or naming missing files (listed).
    """
    if not osp.isfile(meta_info_file):
        raise UserError(f'{role}.meta_info_file: {meta_info_file} does not exist. Fix the path, or remove the option '
                        'to use every image in the folders.')
    with open(meta_info_file) as f:
        names = [line.split()[0] for line in f if line.strip()]
    if not names:
        raise UserError(f'{role}.meta_info_file: {meta_info_file} names no files.')
    for folder in folders:
        missing = [n for n in names if not osp.isfile(osp.join(folder, n))]
        if missing:
            raise UserError(f'{role}.meta_info_file: {meta_info_file} names {len(missing)} file(s) missing from '
                            f'{folder}: {listing(missing)}. Re-create the meta-info file or the folder.')
    return names


def check_paired_folders(gt_folder, lq_folder, scale, role, gt_size=None, filename_tmpl='{}', hint='', exact=False,
                         npy=False):
    """Check a BasicSR ``PairedImageDataset`` (or ``PairedNpyDataset``) folder pair before training or validation.

    Args:
        gt_folder (str): HR (ground-truth) folder.
        lq_folder (str): LR folder.
        scale (int): Upscaling factor.
        role (str): The options path of the dataset, for messages, e.g. ``'datasets.train'``.
        gt_size (int | None): Training HR patch size; every HR image must be at least this large. None: no check.
        filename_tmpl (str): BasicSR's template from an HR base name to the LR base name. Default: ``'{}'``.
        hint (str): What to do if a folder is missing or empty.
        exact (bool): HR sizes must be exact multiples of ``scale`` (BasicSR's training crop requires it); otherwise
            an HR may be up to ``scale - 1`` pixels larger (it is cropped at validation). Default: False.
        npy (bool): The folders hold ``.npy`` arrays (:class:`~srdistill.data.paired_npy_dataset.PairedNpyDataset`),
            not image files. Default: False.

    Returns:
        int: Number of pairs.

    Raises:
        UserError: On the first problem found, naming the files and what to do.
    """
    extensions, size_of = (('.npy', ), npy_image_size) if npy else (IMAGE_EXTENSIONS, image_size)
    gt_names = list_images(gt_folder, f'{role}.dataroot_gt', hint, extensions)
    lq_names = list_images(lq_folder, f'{role}.dataroot_lq', hint, extensions)
    lq_set = set(lq_names)
    expected_lq = {gt: filename_tmpl.format(osp.splitext(gt)[0]) + osp.splitext(gt)[1] for gt in gt_names}
    missing_lq = [gt for gt, lq in expected_lq.items() if lq not in lq_set]
    if missing_lq:
        raise UserError(f'{role}: {len(missing_lq)} HR image(s) in {gt_folder} have no LR image of the same name in '
                        f'{lq_folder}: {listing(missing_lq)}. Re-create the LR folder from the HR folder.')
    orphan_lq = sorted(lq_set - set(expected_lq.values()))
    if orphan_lq:
        raise UserError(f'{role}: {len(orphan_lq)} LR image(s) in {lq_folder} have no HR image in {gt_folder}: '
                        f'{listing(orphan_lq)}. Remove them or add their HR images.')

    for gt_name, lq_name in expected_lq.items():
        gt_path, lq_path = osp.join(gt_folder, gt_name), osp.join(lq_folder, lq_name)
        (h_gt, w_gt), (h_lq, w_lq) = size_of(gt_path), size_of(lq_path)
        if (h_gt // scale, w_gt // scale) != (h_lq, w_lq) or (exact and (h_gt % scale or w_gt % scale)):
            raise UserError(f'{role}: sizes do not match scale {scale}: HR {gt_path} is {w_gt}x{h_gt}, so its LR '
                            f'should be {w_gt / scale:g}x{h_gt / scale:g}, but {lq_path} is {w_lq}x{h_lq}. Re-create '
                            f'the LR image with this scale (or fix the `scale` option).')
        if gt_size is not None and (h_gt < gt_size or w_gt < gt_size):
            raise UserError(f'{role}.gt_size: the training patch ({gt_size}x{gt_size}) is larger than HR image '
                            f'{gt_path} ({w_gt}x{h_gt}). Lower gt_size or remove the small image.')
    return len(gt_names)
