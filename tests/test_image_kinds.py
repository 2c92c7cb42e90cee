"""Grayscale, RGBA, 16-bit, BMP and truncated files: each handled deliberately, in training and benchmark sets."""
import os
from os import path as osp

import cv2
import numpy as np
import pytest
from conftest import SHARED_DATASETS, photo_crops, require_shared

from srdistill.data.checks import check_meta_info
from srdistill.data.image_files import check_complete
from srdistill.data.prepare import prepare_paired_folder, to_training_image
from srdistill.utils.errors import UserError
from srdistill.utils.matlab_imresize import imresize


@pytest.fixture
def kinds(tmp_path):
    """One real 48x48 photo crop saved as gray PNG, RGBA PNG, 16-bit PNG and BMP."""
    bgr = photo_crops(1, 48)[0]
    folder = tmp_path / 'kinds'
    folder.mkdir()
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    cv2.imwrite(str(folder / 'gray.png'), gray)
    alpha = np.full(bgr.shape[:2] + (1, ), 128, np.uint8)
    cv2.imwrite(str(folder / 'rgba.png'), np.concatenate([bgr, alpha], axis=2))
    cv2.imwrite(str(folder / 'deep.png'), bgr.astype(np.uint16) * 257 + 100)  # 16-bit; /257 rounds back to bgr
    cv2.imwrite(str(folder / 'photo.bmp'), bgr)
    return str(folder), bgr, gray


def test_training_set_makes_every_kind_8bit_bgr(kinds, tmp_path):
    folder, bgr, gray = kinds
    out = str(tmp_path / 'train')
    summary = prepare_paired_folder([folder], out, scales=(4, ), workers=1, show_progress=False)
    assert sorted(summary['notes']) == ['deep.png: 16-bit scaled to 8-bit', 'gray.png: grayscale replicated to 3 '
                                        'channels', 'rgba.png: alpha dropped']
    hr = {n: cv2.imread(osp.join(out, 'HR', f'{n}.png'), cv2.IMREAD_UNCHANGED)
          for n in ('gray', 'rgba', 'deep', 'photo')}
    assert all(img.dtype == np.uint8 and img.shape == (48, 48, 3) for img in hr.values())
    assert np.array_equal(hr['rgba'], bgr) and np.array_equal(hr['deep'], bgr) and np.array_equal(hr['photo'], bgr)
    assert np.array_equal(hr['gray'], np.repeat(gray[..., None], 3, axis=2))
    lr = cv2.imread(osp.join(out, 'LR_bicubic', 'X4', 'photo.png'))  # BMP input, PNG output
    assert np.array_equal(lr, imresize(bgr, 1 / 4))


def test_benchmark_set_keeps_each_kind(kinds, tmp_path):
    folder, bgr, gray = kinds
    out = str(tmp_path / 'bench')
    prepare_paired_folder([folder], out, scales=(2, ), mod_crop_hr=False, keep_channels=True, workers=1,
                          show_progress=False)
    lr = {n: cv2.imread(osp.join(out, 'LR_bicubic', 'X2', f'{n}.png'), cv2.IMREAD_UNCHANGED)
          for n in ('gray', 'rgba', 'deep')}
    assert lr['gray'].shape == (24, 24) and np.array_equal(lr['gray'], imresize(gray, 1 / 2))
    assert lr['rgba'].shape == (24, 24, 4)
    assert lr['deep'].dtype == np.uint16


def test_to_training_image_rejects_unsupported_kinds():
    with pytest.raises(UserError, match='unsupported pixel type float32'):
        to_training_image(np.zeros((4, 4, 3), np.float32), 'x.exr')
    with pytest.raises(UserError, match='2 channels'):
        to_training_image(np.zeros((4, 4, 2), np.uint8), 'x.png')


@pytest.mark.parametrize('ext', ['.png', '.jpg', '.bmp', '.webp'])
def test_truncated_files_are_detected(tmp_path, ext):
    path = str(tmp_path / f'img{ext}')
    cv2.imwrite(path, photo_crops(1, 64)[0])
    check_complete(path)  # the whole file passes
    data = open(path, 'rb').read()
    open(path, 'wb').write(data[:len(data) * 2 // 3])
    with pytest.raises(UserError, match=rf'img{ext} is truncated'):
        check_complete(path)


def test_meta_info_file_naming_missing_files(tmp_path):
    (tmp_path / 'HR').mkdir()
    cv2.imwrite(str(tmp_path / 'HR' / 'a.png'), photo_crops(1, 16)[0])
    meta = tmp_path / 'meta.txt'
    meta.write_text('a.png (16,16,3)\nb.png (16,16,3)\n')
    with pytest.raises(UserError, match=r'datasets.train.meta_info_file: .*meta.txt names 1 file\(s\) missing from '
                       r'.*HR: b.png'):
        check_meta_info(str(meta), [str(tmp_path / 'HR')], 'datasets.train')
    with pytest.raises(UserError, match='nope.txt does not exist'):
        check_meta_info(str(tmp_path / 'nope.txt'), [str(tmp_path / 'HR')], 'datasets.train')
    meta.write_text('a.png (16,16,3)\n')
    assert check_meta_info(str(meta), [str(tmp_path / 'HR')], 'datasets.train') == ['a.png']


def test_set14_grayscale_bridge_stays_single_channel(tmp_path):
    hr = osp.join(SHARED_DATASETS, 'Set14', 'HR', 'bridge.png')
    lr = osp.join(SHARED_DATASETS, 'Set14', 'LR_bicubic', 'X4', 'bridge.png')
    require_shared(hr, lr)
    os.symlink(hr, tmp_path / 'bridge.png')
    prepare_paired_folder([str(tmp_path / 'bridge.png')], str(tmp_path / 'out'), scales=(4, ), mod_crop_hr=False,
                          keep_channels=True, workers=1, show_progress=False)
    ours = cv2.imread(str(tmp_path / 'out' / 'LR_bicubic' / 'X4' / 'bridge.png'), cv2.IMREAD_UNCHANGED)
    published = cv2.imread(lr, cv2.IMREAD_UNCHANGED)
    assert ours.ndim == 2 and np.array_equal(ours, published)
