"""DIV2K, from its official archives to the training sub-images and LR files the options use.

Steps (each resumable: rerunning skips finished work and redoes a half-written file):

1. fetch ``DIV2K_train_HR.zip`` (and ``DIV2K_valid_HR.zip``) from the official address, checking the official size
   and SHA-256, or use a copy you already have (its size is checked);
2. check the archive holds exactly the expected images (0001-0800 for train, 0801-0900 for valid) and unpack them,
   CRC-checked, into ``<root>/DIV2K/DIV2K_train_HR``;
3. train: crop 480x480 sub-images with step 240 (BasicSR's recipe; threshold 0, i.e. a last crop flush with each edge)
   from each image mod-cropped to 12, and write their LR x2/x3/x4 as crops of the whole image's MATLAB-bicubic LR:
   ``<root>/DIV2K/HR_sub`` and ``<root>/DIV2K/LR_bicubic/X{s}_sub``;
   valid: the benchmark layout ``<root>/DIV2K_valid/HR`` and ``LR_bicubic/X{s}``;
4. optionally pack each folder into an LMDB (BasicSR's format, with ``meta_info.txt``).
"""
from os import path as osp

from srdistill.data.archives import extract
from srdistill.data.download import download
from srdistill.data.lmdb_pack import pack_lmdb
from srdistill.data.npy_pack import pack_npy
from srdistill.data.prepare import prepare_paired_folder
from srdistill.utils.errors import UserError

DIV2K_URL = 'https://data.vision.ee.ethz.ch/cvl/DIV2K/'
SPLITS = {'train': range(1, 801), 'valid': range(801, 901)}
# Size (bytes) and SHA-256 of the official archives, as TensorFlow Datasets records them
# (tensorflow_datasets/url_checksums/div2k.txt).
CHECKSUMS = {
    'train': (3530603713, '9d0b9c463f6e35b6c62cc6a930ee2224f670b34c1df841a57670f9acf0f6c335'),
    'valid': (448993893, '20dd31fd84d777bc1cf5d6b7654a3f569c0aec74458ae094122ad1d0489900fc'),
}


def official_members(split):
    """Member names of the official ``DIV2K_<split>_HR.zip``."""
    return [f'DIV2K_{split}_HR/{i:04d}.png' for i in SPLITS[split]]


def prepare_div2k(root, splits=('train', ), scales=(2, 3, 4), crop_size=480, step=240, base_url=DIV2K_URL,
                  archive_dir=None, lmdb=False, npy=False, workers=None, overwrite=False, members=None,
                  checksums=CHECKSUMS,
                  show_progress=True):
    """Download (if needed), unpack and prepare DIV2K under ``<root>``.

    Args:
        root (str): Datasets folder, e.g. ``datasets``.
        splits (tuple[str]): ``'train'`` and/or ``'valid'``. Default: ('train',).
        scales (tuple[int]): LR scales. Default: (2, 3, 4).
        crop_size (int): Training sub-image size. Default: 480.
        step (int): Sub-image stride. Default: 240.
        base_url (str): Where ``DIV2K_<split>_HR.zip`` are fetched from. Default: the official address.
        archive_dir (str | None): Folder already holding the zips (no download). Default: ``<root>/DIV2K/downloads``,
            downloading what is missing there.
        lmdb (bool): Also pack every prepared folder into an LMDB. Default: False.
        npy (bool): Also pack the training folders into ``.npy`` arrays (``<folder>_npy``, for
            :class:`~srdistill.data.paired_npy_dataset.PairedNpyDataset`). Default: False.
        workers (int | None): Processes for preparation. Default: all CPUs.
        overwrite (bool): Replace existing prepared files. Default: False.
        members (dict[str, list[str]] | None): Expected archive members per split (for stand-in archives in tests).
            Default: the official names.
        checksums (dict[str, tuple[int, str]]): (size, SHA-256) per split: a download is checked against both, an
            archive in ``archive_dir`` against its size. Default: the official archives' (``CHECKSUMS``).
        show_progress (bool): Progress bars. Default: True.

    Returns:
        dict[str, str]: Prepared folders by role, e.g. ``{'train_gt': ..., 'train_lq_x4': ..., 'valid_gt': ...}``.
    """
    folders = {}
    for split in splits:
        name = f'DIV2K_{split}_HR'
        archive = osp.join(archive_dir or osp.join(root, 'DIV2K', 'downloads'), f'{name}.zip')
        size, sha256 = checksums.get(split, (None, None))
        if archive_dir is None:
            download(base_url.rstrip('/') + f'/{name}.zip', archive, sha256=sha256, size=size,
                     show_progress=show_progress)
        elif not osp.isfile(archive):
            raise UserError(f'{archive} not found: --archive-dir must hold {name}.zip (or leave it out to download '
                            'it).')
        elif size is not None and osp.getsize(archive) != size:
            raise UserError(f'{archive} is {osp.getsize(archive)} bytes, the official archive {size}: it is incomplete '
                            'or another file. Replace it.')
        wanted = (members or {}).get(split) or official_members(split)
        unpacked = osp.join(root, 'DIV2K', name)
        extract(archive, {m: osp.join(unpacked, osp.basename(m)) for m in wanted}, show_progress=show_progress)

        if split == 'train':
            out = osp.join(root, 'DIV2K')
            prepare_paired_folder([unpacked], out, scales=scales, crop_size=crop_size, step=step, workers=workers,
                                  overwrite=overwrite, show_progress=show_progress)
            folders['train_gt'] = osp.join(out, 'HR_sub')
            folders.update({f'train_lq_x{s}': osp.join(out, 'LR_bicubic', f'X{s}_sub') for s in scales})
        else:
            out = osp.join(root, 'DIV2K_valid')
            prepare_paired_folder([unpacked], out, scales=scales, mod_crop_hr=False, keep_channels=True,
                                  workers=workers, overwrite=overwrite, show_progress=show_progress)
            folders['valid_gt'] = osp.join(out, 'HR')
            folders.update({f'valid_lq_x{s}': osp.join(out, 'LR_bicubic', f'X{s}') for s in scales})
    prepared = list(folders.items())
    if lmdb:
        folders.update({f'{role}_lmdb': pack_lmdb(path) for role, path in prepared})
    if npy:
        folders.update({f'{role}_npy': pack_npy(path, overwrite=overwrite, workers=workers,
                                                show_progress=show_progress)
                        for role, path in prepared if role.startswith('train_')})
    return folders
