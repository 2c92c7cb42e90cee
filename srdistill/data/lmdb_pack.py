"""Pack an image folder into an LMDB with BasicSR's ``make_lmdb_from_imgs`` (its format and ``meta_info.txt``)."""
import os
import shutil
from os import path as osp

from basicsr.utils.lmdb_util import make_lmdb_from_imgs

from srdistill.data.image_files import list_images


def pack_lmdb(folder, lmdb_path=None):
    """Write ``folder``'s images to ``<folder>.lmdb`` (keys: file names without extension), unless it exists.

    The database is built under ``<name>.partial.lmdb`` and renamed when complete, so an interrupted run leaves no
    half-written ``.lmdb`` that would look finished; a leftover partial one (ours) is rebuilt.

    Args:
        folder (str): Image folder (e.g. ``datasets/DIV2K/HR_sub``).
        lmdb_path (str | None): Output; default ``folder + '.lmdb'``.

    Returns:
        str: The ``.lmdb`` path.
    """
    lmdb_path = lmdb_path or folder.rstrip('/') + '.lmdb'
    if osp.exists(osp.join(lmdb_path, 'meta_info.txt')):
        return lmdb_path
    names = list_images(folder, folder)
    partial = lmdb_path[:-len('.lmdb')] + '.partial.lmdb'
    if osp.exists(partial):
        shutil.rmtree(partial)
    make_lmdb_from_imgs(folder, partial, names, [osp.splitext(n)[0] for n in names], multiprocessing_read=False)
    os.replace(partial, lmdb_path)
    return lmdb_path
