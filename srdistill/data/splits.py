"""A validation split carved out of a prepared training set, fixed by a seed and listed in a committed file.

Choices (checkpoints, loss weights, methods) are made on images the network never trains on and that are not a test
set. ``carve_split('datasets/291')`` draws ``fraction`` of the images of ``datasets/291/HR`` with
``numpy.random.default_rng(seed)`` and writes:

- ``datasets/splits/291_val.txt``: the validation images, one file name a line (the definition of the split: when it
  exists it is read, never drawn again, so every machine uses the same images);
- ``datasets/splits/291_train.txt`` and, when the set is packed (``HR_npy``), ``291_train_npy.txt``: the other images,
  in the format of BasicSR's ``meta_info_file`` (training options restrict the full folders to them);
- ``datasets/291_val/HR`` and ``LR_bicubic/X<s>``: the validation pairs as a benchmark-like set (hard links, or
  copies across file systems), for in-training validation and for ``tools/evaluate.py`` / ``tools/ablate.py``.
"""
import os
import shutil
from os import path as osp

import numpy as np

from srdistill.utils.errors import UserError
from srdistill.utils.partial_files import partial_path, remove_stale

SPLITS_DIR = osp.abspath(osp.join(osp.dirname(__file__), osp.pardir, osp.pardir, 'datasets', 'splits'))


def read_list(path):
    """File names listed in ``path`` (one a line; blank lines and ``#`` comments skipped)."""
    with open(path) as f:
        return [line.split()[0] for line in f if line.strip() and not line.startswith('#')]


def _write_list(path, names, header=None):
    os.makedirs(osp.dirname(path), exist_ok=True)
    tmp = partial_path(path)
    with open(tmp, 'w') as f:
        if header:
            f.write(''.join(f'# {line}\n' for line in header))
        f.write(''.join(f'{n}\n' for n in names))
    os.replace(tmp, path)


def _place(src, dst):
    if osp.exists(dst):
        return False
    os.makedirs(osp.dirname(dst), exist_ok=True)
    tmp = partial_path(dst)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)
    return True


def carve_split(source, fraction=0.1, seed=0, list_dir=SPLITS_DIR, out_root=None):
    """Split a prepared training set (``<source>/HR``, ``<source>/LR_bicubic/X<s>``) into train and validation.

    Args:
        source (str): The prepared set, e.g. ``datasets/291``.
        fraction (float): Share of the images held out. Default: 0.1.
        seed (int): Seed of the draw. Default: 0.
        list_dir (str): Where the lists live. Default: ``datasets/splits`` of the repository.
        out_root (str | None): Where the validation set is written. Default: beside ``source``.

    Returns:
        dict: ``val`` / ``train`` (names), ``val_list``, ``train_list``, ``train_list_npy`` (or None), ``val_root``,
        ``drawn`` (False when the validation list existed and was reused).

    Raises:
        UserError: ``source`` is not prepared, ``fraction`` is outside (0, 1), or an existing list names images the
            set does not have.
    """
    name = osp.basename(osp.normpath(source))
    hr = osp.join(source, 'HR')
    if not osp.isdir(hr):
        raise UserError(f'{hr} does not exist: prepare the set first (datasets/README.md), e.g. `python '
                        f'tools/prepare_data.py folder --hr <images> --name {name} --npy`.')
    if not 0 < fraction < 1:
        raise UserError(f'--fraction must be between 0 and 1, got {fraction}.')
    images = sorted(n for n in os.listdir(hr) if not n.startswith('.') and '.partial' not in n)
    val_list = osp.join(list_dir, f'{name}_val.txt')
    drawn = not osp.isfile(val_list)
    if drawn:
        count = max(1, round(fraction * len(images)))
        val = sorted(np.random.default_rng(seed).choice(images, count, replace=False).tolist())
        _write_list(val_list, val, [f'{count} of the {len(images)} images of {name}, held out for validation: drawn '
                                    f'by `python tools/prepare_data.py split --source {source} --fraction {fraction} '
                                    f'--seed {seed}` (numpy default_rng). Never train or test on them.'])
    else:
        val = read_list(val_list)
        missing = sorted(set(val) - set(images))
        if missing:
            raise UserError(f'{val_list} names {len(missing)} image(s) missing from {hr} (e.g. {missing[0]}): '
                            'prepare the set with the same command as the list was drawn from, or remove the list '
                            'to draw a new split.')
    held = set(val)
    train = [n for n in images if n not in held]
    train_list = osp.join(list_dir, f'{name}_train.txt')
    _write_list(train_list, train)
    train_list_npy = None
    if osp.isdir(osp.join(source, 'HR_npy')):
        train_list_npy = osp.join(list_dir, f'{name}_train_npy.txt')
        _write_list(train_list_npy, [f'{osp.splitext(n)[0]}.npy' for n in train])
    val_root = osp.join(out_root or osp.dirname(osp.abspath(source)), f'{name}_val')
    lr_root = osp.join(source, 'LR_bicubic')
    scales = sorted(d for d in (os.listdir(lr_root) if osp.isdir(lr_root) else [])
                    if d.startswith('X') and d[1:].isdigit())
    for folder in [list_dir, osp.join(val_root, 'HR')] + [osp.join(val_root, 'LR_bicubic', s) for s in scales]:
        remove_stale(folder)  # temporary files of a run that was killed
    for n in val:
        _place(osp.join(hr, n), osp.join(val_root, 'HR', n))
        for scale in scales:
            lq = osp.join(lr_root, scale, n)
            if osp.isfile(lq):
                _place(lq, osp.join(val_root, 'LR_bicubic', scale, n))
    return dict(val=val, train=train, val_list=val_list, train_list=train_list, train_list_npy=train_list_npy,
                val_root=val_root, drawn=drawn)
