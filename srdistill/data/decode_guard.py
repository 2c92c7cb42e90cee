"""A paired dataset whose sample fails to load names the file that cannot be decoded.

BasicSR's ``imfrombytes`` passes on ``cv2.imdecode``'s ``None`` for pixel data it cannot decode, and the next line
fails with ``'NoneType' object has no attribute 'astype'`` inside a data-loader worker, naming no file. The up-front
checks (:mod:`srdistill.data.checks`) catch damaged PNG files by their checksums; this guard is the second line, for
what they cannot see (a damaged JPEG, a PNG damaged and re-checksummed, a file changed after the check).
"""
import functools

import cv2
import numpy as np

from srdistill.utils.errors import UserError


def _decodes(path):
    """Whether ``path`` decodes as the datasets read it (``.npy``: its array header; else OpenCV)."""
    try:
        if path.endswith('.npy'):
            np.load(path, mmap_mode='r')
            return True
        return cv2.imread(path, cv2.IMREAD_UNCHANGED) is not None
    except (OSError, ValueError, cv2.error):
        return False


def name_undecodable(dataset_cls):
    """Class decorator for a BasicSR paired dataset (``self.paths[index]`` holds ``gt_path`` and ``lq_path``).

    When ``__getitem__`` fails and one of the sample's files does not decode, the failure becomes a
    :class:`UserError` naming that file; any other failure is raised unchanged (it is not the data's).

    Returns:
        type: ``dataset_cls``, its ``__getitem__`` wrapped.
    """
    getitem = dataset_cls.__getitem__

    @functools.wraps(getitem)
    def __getitem__(self, index):
        try:
            return getitem(self, index)
        except Exception as err:  # noqa: BLE001 (re-raised unless a file of the sample is at fault)
            paths = self.paths[index % len(self.paths)]
            bad = [p for p in (paths.get('gt_path'), paths.get('lq_path')) if isinstance(p, str) and not _decodes(p)]
            if not bad:
                raise
            # the error's own text ("'NoneType' object has no attribute 'astype'") would mislead: its type is enough
            raise UserError(f'{bad[0]} cannot be decoded ({type(err).__name__}): its data is damaged. Re-create or '
                            're-download it.') from err

    dataset_cls.__getitem__ = __getitem__
    return dataset_cls
