"""Shared test helpers: small real images (scikit-image's bundled photos), tiny inline options, a CLI runner."""
import copy
import os
import subprocess
import sys
import time
from os import path as osp

import pytest
import yaml

import srdistill  # noqa: F401  (compat fixes + registration, before any BasicSR use in tests)
from srdistill.data.prepare import as_uint8_bgr, write_image
from srdistill.utils.matlab_imresize import imresize

REPO = osp.abspath(osp.join(osp.dirname(__file__), osp.pardir))
# The shared data (Set5, Set14, ...): $SRDISTILL_SHARED if set, else the folder next to the repository.
SHARED = os.environ.get('SRDISTILL_SHARED', osp.join(osp.dirname(REPO), 'shared'))
SHARED_DATASETS = osp.join(SHARED, 'datasets')


def require_shared(*paths):
    """Skip the calling test when a shared-data path is missing, or fail it when the environment says ``CI=true``.

    CI always has the shared data next to the repository, so there a missing path is a broken path (a renamed folder,
    a wrong ``SRDISTILL_SHARED``) that a skip would hide behind a green run; locally it only means the data is absent.

    Args:
        *paths (str | os.PathLike): Files or folders the test reads.
    """
    missing = [str(p) for p in paths if not osp.exists(p)]
    if not missing:
        return
    reason = (f'{missing[0]} not found ({len(missing)} of {len(paths)} shared-data paths missing): the shared data is '
              'not next to the repository (set SRDISTILL_SHARED to the folder holding datasets/)')
    if os.environ.get('CI', '').strip().lower() == 'true':
        pytest.fail(f'{reason}; CI=true, where the shared data is always present, so this fails instead of skipping',
                    pytrace=False)
    pytest.skip(reason)


def require_module(name):
    """Import and return module ``name`` (an optional runtime of the test extra: ncnn, openvino, pnnx); skip the calling
    test when it is missing, or fail it when the environment says ``CI=true``.

    ``make test`` installs the test extra, so under CI a missing module is a broken install that a skip would hide.
    """
    import importlib
    try:
        return importlib.import_module(name)
    except ImportError as err:
        reason = f'{name} is not installed ({err}): pip install -e ".[test]" installs it'
        if os.environ.get('CI', '').strip().lower() == 'true':
            pytest.fail(f'{reason}; CI=true, where the test extra is always installed, so this fails instead of '
                        'skipping', pytrace=False)
        pytest.skip(reason)


def photo_crops(n, size, seed=0):
    """``n`` real HR crops (uint8 BGR, ``size`` x ``size``) cut from scikit-image's astronaut/coffee/chelsea photos."""
    from skimage import data
    photos = [as_uint8_bgr(p) for p in (data.astronaut(), data.coffee(), data.chelsea())]
    crops = []
    for i in range(n):
        img = photos[i % len(photos)]
        y = (37 * (i + seed)) % (img.shape[0] - size)
        x = (53 * (i + seed)) % (img.shape[1] - size)
        crops.append(img[y:y + size, x:x + size].copy())
    return crops


def make_paired_folder(root, n=4, size=48, scale=4, seed=0):
    """Write ``root/HR`` and ``root/LR`` with ``n`` real pairs (LR by exact MATLAB bicubic). Returns (gt, lq)."""
    gt, lq = osp.join(root, 'HR'), osp.join(root, 'LR')
    for i, hr in enumerate(photo_crops(n, size, seed)):
        write_image(hr, osp.join(gt, f'img{i:02d}.png'))
        write_image(imresize(hr, 1 / scale), osp.join(lq, f'img{i:02d}.png'))
    return gt, lq


TINY_OPT = {
    'name': 'tiny_sd',
    'model_type': 'SelfDistillSRModel',
    'scale': 4,
    'num_gpu': 0,
    'manual_seed': 0,
    'datasets': {
        'train': {
            'name': 'train', 'type': 'PairedImageDataset', 'dataroot_gt': None, 'dataroot_lq': None,
            'io_backend': {'type': 'disk'}, 'gt_size': 32, 'use_hflip': True, 'use_rot': True,
            'num_worker_per_gpu': 0, 'batch_size_per_gpu': 2, 'dataset_enlarge_ratio': 1, 'prefetch_mode': None
        },
        'val': {'name': 'val', 'type': 'PairedImageDataset', 'dataroot_gt': None, 'dataroot_lq': None,
                'io_backend': {'type': 'disk'}},
    },
    'network_g': {'type': 'MultiExitSRResNet', 'num_feat': 8, 'num_block': 4, 'exits': [2], 'upscale': 4},
    'path': {'pretrain_network_g': None, 'strict_load_g': True, 'resume_state': None},
    'train': {
        'ema_decay': 0,
        'optim_g': {'type': 'Adam', 'lr': 2e-4, 'betas': [0.9, 0.99]},
        'scheduler': {'type': 'MultiStepLR', 'milestones': [1000], 'gamma': 0.5},
        'total_iter': 4,
        'warmup_iter': -1,
        'pixel_opt': {'type': 'SelfDistillationLoss', 'pixel_weight': 0.9, 'distill_weight': 0.1},
    },
    'val': {
        'val_freq': 2, 'save_img': False,
        'metrics': {'psnr': {'type': 'calculate_psnr_y', 'crop_border': 4},
                    'ssim': {'type': 'calculate_ssim_y', 'crop_border': 4}},
    },
    'logger': {'print_freq': 1, 'save_checkpoint_freq': 2, 'use_tb_logger': True},
}


@pytest.fixture
def tiny_opt(tmp_path):
    """A tiny training options dict whose train/val folders hold real image pairs under ``tmp_path/data``."""
    opt = copy.deepcopy(TINY_OPT)
    train_gt, train_lq = make_paired_folder(str(tmp_path / 'data' / 'train'), n=4, size=48)
    val_gt, val_lq = make_paired_folder(str(tmp_path / 'data' / 'val'), n=2, size=48, seed=5)
    opt['datasets']['train'].update(dataroot_gt=train_gt, dataroot_lq=train_lq)
    opt['datasets']['val'].update(dataroot_gt=val_gt, dataroot_lq=val_lq)
    return opt


def write_opt(path, opt):
    with open(path, 'w') as f:
        yaml.safe_dump(opt, f, sort_keys=False)
    return str(path)


def run_train(root, *args, cwd=None):
    """Run the training entry point in a fresh process with ``root`` as the project root. Returns CompletedProcess."""
    code = f'import sys; sys.argv = ["train.py", *sys.argv[2:]]; from srdistill.train import main; main({str(root)!r})'
    return subprocess.run([sys.executable, '-c', code, '--', *map(str, args)], cwd=cwd or str(root),
                          capture_output=True, text=True, timeout=600)


# the process table (Linux /proc): the processes a runner leaves behind
def children(pid):
    """Pids of the live (not zombie) processes whose parent is ``pid``."""
    found = []
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            try:
                with open(f'/proc/{entry}/stat') as f:
                    fields = f.read().rsplit(')', 1)[1].split()
            except OSError:  # it ended meanwhile
                continue
            if int(fields[1]) == pid and fields[0] != 'Z':
                found.append(int(entry))
    return found


def alive(pid):
    try:
        with open(f'/proc/{pid}/stat') as f:
            return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except OSError:
        return False


def wait_gone(pids, seconds):
    deadline = time.time() + seconds
    while time.time() < deadline and any(alive(p) for p in pids):
        time.sleep(0.1)
    return [p for p in pids if alive(p)]
