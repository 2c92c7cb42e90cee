"""DIV2K, from its official archives to the training sub-images and LR files the options use.

Steps (each resumable: rerunning skips finished work and redoes a half-written file):

1. fetch ``DIV2K_train_HR.zip`` (and ``DIV2K_valid_HR.zip``) from the official address, or use a copy you already have;
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
from srdistill.data.prepare import prepare_paired_folder

DIV2K_URL = 'http://data.vision.ee.ethz.ch/cvl/DIV2K/'
SPLITS = {'train': range(1, 801), 'valid': range(801, 901)}


def official_members(split):
    """Member names of the official ``DIV2K_<split>_HR.zip``."""
    return [f'DIV2K_{split}_HR/{i:04d}.png' for i in SPLITS[split]]


def prepare_div2k(root, splits=('train', ), scales=(2, 3, 4), crop_size=480, step=240, base_url=DIV2K_URL,
                  archive_dir=None, lmdb=False, workers=None, overwrite=False, members=None, show_progress=True):
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
        workers (int | None): Processes for preparation. Default: all CPUs.
        overwrite (bool): Replace existing prepared files. Default: False.
        members (dict[str, list[str]] | None): Expected archive members per split (for stand-in archives in tests).
            Default: the official names.
        show_progress (bool): Progress bars. Default: True.

    Returns:
        dict[str, str]: Prepared folders by role, e.g. ``{'train_gt': ..., 'train_lq_x4': ..., 'valid_gt': ...}``.
    """
    folders = {}
    for split in splits:
        name = f'DIV2K_{split}_HR'
        archive = osp.join(archive_dir or osp.join(root, 'DIV2K', 'downloads'), f'{name}.zip')
        if archive_dir is None:
            download(base_url.rstrip('/') + f'/{name}.zip', archive, show_progress=show_progress)
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
    if lmdb:
        folders.update({f'{role}_lmdb': pack_lmdb(path) for role, path in list(folders.items())})
    return folders
