"""PairedNpyDataset and ``--npy`` packing: the same samples as PairedImageDataset, kept files, clear messages."""
import os
import random
import sys
from os import path as osp

import numpy as np
import pytest
import torch
from basicsr.data import build_dataset
from conftest import make_paired_folder, photo_crops, run_train, write_opt

from srdistill.data.checks import npy_image_size
from srdistill.data.npy_pack import npy_folder, pack_npy
from srdistill.data.prepare import write_image
from srdistill.data.prepare_cli import main as prepare_main
from srdistill.train import main as train_main


def _datasets(gt, lq, phase='train', **extra):
    base = dict(name='t', dataroot_gt=gt, dataroot_lq=lq, io_backend={'type': 'disk'}, gt_size=32, use_hflip=True,
                use_rot=True, phase=phase, scale=4, **extra)
    png = build_dataset(dict(base, type='PairedImageDataset'))
    npy = build_dataset(dict(base, type='PairedNpyDataset', dataroot_gt=npy_folder(gt), dataroot_lq=npy_folder(lq)))
    return png, npy


def _by_name(dataset):
    return {osp.splitext(osp.basename(p['gt_path']))[0]: i for i, p in enumerate(dataset.paths)}


@pytest.mark.parametrize('phase, extra', [('train', {}), ('val', {}), ('train', {'color': 'y'}),
                                          ('train', {'mean': [0.5, 0.4, 0.3], 'std': [0.2, 0.3, 0.4]})])
def test_samples_equal_those_of_the_png_dataset(tmp_path, phase, extra):
    gt, lq = make_paired_folder(str(tmp_path), n=6, size=52)  # 52 = 4 x 13: crops at every offset of a 32 patch
    pack_npy(gt, show_progress=False), pack_npy(lq, show_progress=False)
    png, npy = _datasets(gt, lq, phase, **extra)
    assert len(png) == len(npy) == 6
    names = _by_name(npy)
    assert list(names) == sorted(names)  # sorted listing: the same order on every file system
    for i in range(len(png)):
        j = names[osp.splitext(osp.basename(png.paths[i]['gt_path']))[0]]
        for seed in range(4):  # different crops, flips and rotations
            random.seed(seed)
            a = png[i]
            random.seed(seed)
            b = npy[j]
            assert a['gt'].dtype == b['gt'].dtype == torch.float32
            assert torch.equal(a['gt'], b['gt']) and torch.equal(a['lq'], b['lq'])
        expected_hw = (32, 32) if phase == 'train' else (52, 52)
        assert tuple(b['gt'].shape[-2:]) == expected_hw and tuple(b['lq'].shape[-2:]) == (expected_hw[0] // 4, ) * 2
        assert b['gt_path'].endswith('.npy') and b['lq_path'].endswith('.npy')


def test_pack_keeps_existing_arrays_unless_overwrite_and_names_bad_images(tmp_path):
    gt, _ = make_paired_folder(str(tmp_path), n=2, size=48)
    out = pack_npy(gt, workers=1, show_progress=False)
    assert out == gt + '_npy' and sorted(os.listdir(out)) == ['img00.npy', 'img01.npy']
    first = osp.join(out, 'img00.npy')
    assert npy_image_size(first) == (48, 48)
    np.save(first, np.zeros((5, 5, 3), np.uint8))  # the user's own array sits there
    pack_npy(gt, workers=2, show_progress=False)
    assert np.load(first).shape == (5, 5, 3)  # kept
    pack_npy(gt, overwrite=True, workers=1, show_progress=False)
    assert np.array_equal(np.load(first), photo_crops(1, 48)[0])  # replaced when asked; the BGR pixels of the PNG
    assert not [n for n in os.listdir(out) if 'partial' in n]

    with open(osp.join(gt, 'img02.png'), 'wb') as f:
        f.write(b'\x89PNG\r\n\x1a\n' + b'\0' * 40)  # no IEND: truncated
    with pytest.raises(Exception, match=r'img02.png is truncated'):
        pack_npy(gt, workers=1, show_progress=False)


def test_prepare_folder_npy_prints_the_options_to_use(tmp_path, capsys):
    photos = str(tmp_path / 'photos')
    for i, crop in enumerate(photo_crops(3, 60)):
        write_image(crop, osp.join(photos, f'p{i}.png'))
    assert prepare_main(['folder', '--hr', photos, '--name', 'N', '--root', str(tmp_path), '--scales', '2', '4',
                         '--npy', '--workers', '1']) == 0
    out = capsys.readouterr().out
    assert 'type: PairedNpyDataset' in out and f'dataroot_gt: {tmp_path / "N" / "HR_npy"}' in out
    assert f'dataroot_lq: {tmp_path / "N" / "LR_bicubic" / "X4_npy"}   (scale: 4)' in out
    for folder in ('HR_npy', 'LR_bicubic/X2_npy', 'LR_bicubic/X4_npy'):
        assert sorted(os.listdir(tmp_path / 'N' / folder)) == ['p0.npy', 'p1.npy', 'p2.npy']
    assert npy_image_size(str(tmp_path / 'N' / 'LR_bicubic' / 'X4_npy' / 'p0.npy')) == (15, 15)


def _npy_opt(tiny_opt):
    for phase in ('train', 'val'):
        d = tiny_opt['datasets'][phase]
        d.update(type='PairedNpyDataset', dataroot_gt=pack_npy(d['dataroot_gt'], workers=1, show_progress=False),
                 dataroot_lq=pack_npy(d['dataroot_lq'], workers=1, show_progress=False))
        d.pop('io_backend')
    return tiny_opt


def test_trains_and_validates_from_yaml(tiny_opt, tmp_path):
    result = run_train(tmp_path, '-opt', write_opt(tmp_path / 'o.yml', _npy_opt(tiny_opt)))
    assert result.returncode == 0, result.stderr[-3000:]
    log = next((tmp_path / 'experiments' / 'tiny_sd').glob('train_tiny_sd_*.log')).read_text()
    assert 'Dataset [PairedNpyDataset] - train is built.' in log and 'psnr_e2' in log
    assert (tmp_path / 'experiments' / 'tiny_sd' / 'models' / 'net_g_4.pth').is_file()


def _fail(monkeypatch, capsys, root, opt):
    monkeypatch.setattr(sys, 'argv', ['train.py', '-opt', write_opt(root / 'bad.yml', opt)])
    with pytest.raises(SystemExit) as exc:
        train_main(str(root))
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith('srdistill: error: ') and err.count('\n') == 1, err
    assert not (root / 'experiments').exists()
    return err


def test_not_packed_says_how_to_pack(tiny_opt, tmp_path, monkeypatch, capsys):
    tiny_opt['datasets']['train'].update(type='PairedNpyDataset',
                                         dataroot_gt=npy_folder(tiny_opt['datasets']['train']['dataroot_gt']))
    err = _fail(monkeypatch, capsys, tmp_path, tiny_opt)
    assert f'datasets.train.dataroot_gt: folder {tiny_opt["datasets"]["train"]["dataroot_gt"]} does not exist' in err
    assert 'tools/prepare_data.py folder --hr <HR images> --name <name> --npy' in err


def test_image_folder_given_to_the_npy_dataset(tiny_opt, tmp_path, monkeypatch, capsys):
    tiny_opt['datasets']['train']['type'] = 'PairedNpyDataset'  # still pointing at the PNG folders
    err = _fail(monkeypatch, capsys, tmp_path, tiny_opt)
    assert 'holds files that are not .npy files: img00.png' in err


@pytest.mark.parametrize('array, expected', [
    (np.zeros((12, 12, 3), np.float32), 'holds a float32 array of shape (12, 12, 3), not an 8-bit 3-channel image'),
    (np.zeros((12, 12), np.uint8), 'holds a uint8 array of shape (12, 12), not an 8-bit 3-channel image'),
])
def test_wrong_array(tiny_opt, tmp_path, monkeypatch, capsys, array, expected):
    opt = _npy_opt(tiny_opt)
    bad = osp.join(opt['datasets']['train']['dataroot_lq'], 'img01.npy')
    np.save(bad, array)
    assert f'{bad} {expected}' in _fail(monkeypatch, capsys, tmp_path, opt)


def test_truncated_array(tiny_opt, tmp_path, monkeypatch, capsys):
    opt = _npy_opt(tiny_opt)
    bad = osp.join(opt['datasets']['train']['dataroot_gt'], 'img00.npy')
    with open(bad, 'r+b') as f:
        f.truncate(osp.getsize(bad) - 10)
    assert f'{bad} is truncated' in _fail(monkeypatch, capsys, tmp_path, opt)


def test_scale_mismatch_names_both_arrays(tiny_opt, tmp_path, monkeypatch, capsys):
    opt = _npy_opt(tiny_opt)
    lq = osp.join(opt['datasets']['train']['dataroot_lq'], 'img00.npy')
    np.save(lq, np.zeros((10, 12, 3), np.uint8))
    err = _fail(monkeypatch, capsys, tmp_path, opt)
    assert 'sizes do not match scale 4' in err and f'but {lq} is 12x10' in err


def test_lmdb_backend_is_refused(tiny_opt, tmp_path, monkeypatch, capsys):
    opt = _npy_opt(tiny_opt)
    opt['datasets']['train']['io_backend'] = {'type': 'lmdb'}
    err = _fail(monkeypatch, capsys, tmp_path, opt)
    assert 'datasets.train.io_backend: PairedNpyDataset reads .npy files from disk, not lmdb' in err
