"""Image files: which files of a folder or command line are images, and how one is read. One lister, one reader.

Every tool lists its images here (data preparation, the dataset checks, evaluation, inference, export), so they agree
on what an image file is: a file, not hidden (as BasicSR's ``scandir`` skips them), whose extension is one OpenCV
decodes (BasicSR reads images with ``cv2.imdecode``). They read images here too, so an empty, truncated or undecodable
file is one message naming it wherever it is met.
"""
import glob
import os
from os import path as osp

import cv2
import numpy as np

from srdistill.utils.errors import UserError
from srdistill.utils.partial_files import partial_pid

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp', '.ppm', '.pgm')
_SHOW = 5  # how many offending names a message lists

# read_image's forms
UNCHANGED = 'unchanged'  # as decoded: gray (H, W), BGR (H, W, 3) or BGRA (H, W, 4); uint8 or uint16
UINT8 = 'uint8'  # uint8 gray (H, W) or BGR (H, W, 3): alpha dropped, 16-bit rounded to 8-bit
RGB_FLOAT = 'rgb_float'  # float32 RGB (H, W, 3) in [0, 1]: the UINT8 image, gray replicated, / 255
FORMS = (UNCHANGED, UINT8, RGB_FLOAT)


def listing(names):
    """The first few ``names`` and how many there are, for a message."""
    shown = ', '.join(names[:_SHOW])
    return shown + (f' ... ({len(names)} in all)' if len(names) > _SHOW else '')


def png_name(path):
    """The name ``path`` is written as by the data tools: its base name with ``.png``."""
    return osp.splitext(osp.basename(path))[0] + '.png'


def check_distinct_outputs(paths, output_name):
    """Raise if two input files would be written under one name (``a.png`` and ``a.PNG`` both become ``a.png``).

    Args:
        paths (list[str]): Input files.
        output_name (callable): Input path -> the name it is written as.

    Raises:
        UserError: Naming the first two such files and their common output name.
    """
    seen = {}
    for path in sorted(paths):
        name = output_name(path)
        if name in seen:
            raise UserError(f'{seen[name]} and {path} would both be written as {name}: rename one of them.')
        seen[name] = path


def list_images(folder, role, hint='', extensions=IMAGE_EXTENSIONS, only_images=True):
    """Names of the image files in ``folder``, sorted, after checking it is a folder holding some.

    Args:
        folder (str): Folder to scan (not recursive; hidden files are ignored, as BasicSR's ``scandir`` does).
        role (str): What the folder is, for messages, e.g. ``'datasets.train.dataroot_gt'``.
        hint (str): What to do if the folder is missing or empty (appended to the message).
        extensions (tuple[str]): The file types listed. Default: image files; ``('.npy',)`` for packed arrays.
        only_images (bool): True (a dataset folder, read whole by BasicSR): any other file, and a file left by an
            interrupted run, is refused. False (a folder of inputs): other files are left out.

    Returns:
        list[str]: File names.

    Raises:
        UserError: Missing folder, not a folder, no images, or (``only_images``) a file that is not an image.
    """
    if not osp.exists(folder):
        raise UserError(f'{role}: folder {folder} does not exist. {hint}'.rstrip())
    if not osp.isdir(folder):
        raise UserError(f'{role}: {folder} is not a folder. {hint}'.rstrip())
    names = sorted(n for n in os.listdir(folder) if not n.startswith('.') and osp.isfile(osp.join(folder, n)))
    if only_images:
        leftovers = [n for n in names if partial_pid(n) is not None]
        if leftovers:  # not hidden: written before temporary files were (utils/partial_files.py)
            raise UserError(f'{role}: {folder} holds {listing(leftovers)}, left by an interrupted run: run the '
                            'command that made the folder again (tools/prepare_data.py removes such files and '
                            'completes the set), or delete them.')
        others = [n for n in names if osp.splitext(n)[1].lower() not in extensions]
        if others:
            kind = 'images' if extensions == IMAGE_EXTENSIONS else ' '.join(extensions) + ' files'
            raise UserError(f'{role}: {folder} holds files that are not {kind}: {listing(others)}. Move them out of '
                            f'the folder (allowed: {" ".join(extensions)}).')
    names = [n for n in names if osp.splitext(n)[1].lower() in extensions]
    if not names:
        raise UserError(f'{role}: folder {folder} holds no images. {hint}'.rstrip())
    return names


def find_images(inputs, written_as=png_name):
    """Image files named by ``inputs``: files, folders (not recursive) and globs, in order, without repeats.

    A folder gives its images sorted by name (other files are left out), a glob its matching images sorted; a file
    named on its own must be an image.

    Args:
        inputs (list[str]): Files, folders and globs.
        written_as (callable | None): Path -> the name the caller writes it as; two inputs written as one name are
            refused. Default: :func:`png_name` (the data tools). None: no check (the caller plans its outputs).

    Returns:
        list[str]: Paths.

    Raises:
        UserError: An input that does not exist, a named file that is not an image, no image at all, or two inputs
            that would be written as one file.
    """
    files = []
    for item in inputs:
        if osp.isdir(item):
            files += [osp.join(item, n) for n in sorted(os.listdir(item))
                      if not n.startswith('.') and osp.isfile(osp.join(item, n))
                      and osp.splitext(n)[1].lower() in IMAGE_EXTENSIONS]
        elif osp.isfile(item):
            if osp.splitext(item)[1].lower() not in IMAGE_EXTENSIONS:
                raise UserError(f'{item} is not an image file (allowed: {" ".join(IMAGE_EXTENSIONS)}).')
            files.append(item)
        elif any(c in item for c in '*?['):
            files += [f for f in sorted(glob.glob(item))
                      if osp.isfile(f) and osp.splitext(f)[1].lower() in IMAGE_EXTENSIONS]
        else:
            raise UserError(f'{item} does not exist.')
    files = list(dict.fromkeys(files))
    if not files:
        raise UserError(f'no image files ({" ".join(IMAGE_EXTENSIONS)}) found in {" ".join(inputs)}.')
    if written_as is not None:
        check_distinct_outputs(files, written_as)
    return files


def check_complete(path):
    """Raise if an image file is empty or truncated, from its format's end marker (reads only its first/last bytes).

    PNG must contain its ``IEND`` chunk, JPEG end with the EOI marker, BMP and WebP be as long as their headers say.
    Other formats are left to the decoder.

    Raises:
        UserError: Zero-byte or truncated file.
    """
    size = osp.getsize(path)
    if size == 0:
        raise UserError(f'{path} is an empty (zero-byte) file. Remove it or re-create it.')
    with open(path, 'rb') as f:
        head = f.read(16)
        f.seek(max(0, size - 64))
        tail = f.read()
    if head.startswith(b'\x89PNG'):
        complete = b'IEND' in tail
    elif head.startswith(b'\xff\xd8'):
        complete = tail.rstrip(b'\x00\r\n ').endswith(b'\xff\xd9')
    elif head.startswith(b'BM'):
        complete = size >= int.from_bytes(head[2:6], 'little')
    elif head[:4] == b'RIFF' and head[8:12] == b'WEBP':
        complete = size >= int.from_bytes(head[4:8], 'little') + 8
    else:
        complete = True
    if not complete:
        raise UserError(f'{path} is truncated (the end of the file is missing). Re-create or re-download it.')


def to_uint8(img):
    """16-bit -> 8-bit as ``round(v / 257)`` (65535 -> 255); uint8 unchanged."""
    return np.floor(img.astype(np.float64) / 257 + 0.5).astype(np.uint8) if img.dtype == np.uint16 else img


def read_image(path, form=UNCHANGED):
    """Read an image file, after checking it is complete.

    Args:
        path (str): Image file.
        form (str): ``'unchanged'`` (default; inference keeps the kind of its input): as decoded, gray (H, W), BGR
            (H, W, 3) or BGRA (H, W, 4), uint8 or uint16. ``'uint8'`` (evaluation, metrics, INT8 calibration): uint8
            gray (H, W) or BGR (H, W, 3), alpha dropped, 16-bit rounded to 8-bit (:func:`to_uint8`).
            ``'rgb_float'`` (a network's input): that uint8 image as float32 RGB (H, W, 3) in [0, 1], gray
            replicated to three channels.

    Returns:
        np.ndarray: The image.

    Raises:
        UserError: The file is empty, truncated or cannot be decoded; for ``uint8`` and ``rgb_float``, a pixel type
            other than 8 or 16 bits.
    """
    if form not in FORMS:
        raise ValueError(f'form must be one of {FORMS}, got {form!r}.')
    check_complete(path)
    img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise UserError(f'{path} cannot be read as an image. Remove it or re-create it.')
    if form == UNCHANGED:
        return img
    if img.dtype not in (np.uint8, np.uint16):
        raise UserError(f'{path}: unsupported pixel type {img.dtype}; convert it to 8- or 16-bit PNG.')
    img = to_uint8(img)
    img = img[..., :3] if img.ndim == 3 and img.shape[2] == 4 else img
    if form == UINT8:
        return img
    rgb = np.repeat(img[..., None], 3, axis=2) if img.ndim == 2 else img[..., ::-1]
    return np.ascontiguousarray(rgb / 255., dtype=np.float32)
