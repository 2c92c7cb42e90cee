"""prepare_paired_folder: layout, exact sizes, sub-images, resumability, skipping, benchmark mode on real files."""
import os
from os import path as osp

import cv2
import numpy as np
import pytest
from conftest import SHARED_DATASETS, photo_crops, require_shared

from srdistill.data.prepare import prepare_paired_folder, subimage_origins, write_image
from srdistill.utils.errors import UserError
from srdistill.utils.matlab_imresize import imresize


@pytest.fixture
def hr_folder(tmp_path):
    folder = tmp_path / 'photos'
    sizes = [(100, 130), (75, 90), (61, 64)]  # (h, w); none a multiple of 12
    for i, ((h, w), crop) in enumerate(zip(sizes, photo_crops(3, 130))):
        write_image(crop[:h, :w], str(folder / f'p{i}.png'))
    return str(folder)


def test_training_set_hr_is_exactly_scale_times_lr(hr_folder, tmp_path):
    out = str(tmp_path / 'set')
    summary = prepare_paired_folder([hr_folder], out, scales=(2, 3, 4), workers=1, show_progress=False)
    assert summary == dict(images=3, written=12, skipped=[], notes=[])
    for name in ('p0.png', 'p1.png', 'p2.png'):
        hr = cv2.imread(osp.join(out, 'HR', name))
        assert hr.shape[0] % 12 == 0 and hr.shape[1] % 12 == 0  # mod-cropped to lcm(2, 3, 4)
        for s in (2, 3, 4):
            lr = cv2.imread(osp.join(out, 'LR_bicubic', f'X{s}', name))
            assert lr.shape[:2] == (hr.shape[0] // s, hr.shape[1] // s)
    assert cv2.imread(osp.join(out, 'HR', 'p0.png')).shape == (96, 120, 3)


def test_rerun_skips_finished_files_and_keeps_them(hr_folder, tmp_path):
    out = str(tmp_path / 'set')
    prepare_paired_folder([hr_folder], out, workers=1, show_progress=False)
    lr_file = osp.join(out, 'LR_bicubic', 'X4', 'p1.png')
    stamp = os.stat(lr_file).st_mtime_ns
    os.remove(osp.join(out, 'LR_bicubic', 'X4', 'p0.png'))  # as if interrupted
    summary = prepare_paired_folder([hr_folder], out, workers=2, show_progress=False)
    assert summary['written'] == 1
    assert os.stat(lr_file).st_mtime_ns == stamp
    assert not [n for n in os.listdir(osp.join(out, 'HR')) if 'partial' in n]


def test_subimages_and_min_size(hr_folder, tmp_path):
    out = str(tmp_path / 'sub')
    summary = prepare_paired_folder([hr_folder], out, crop_size=48, step=24, min_size=62, workers=1,
                                    show_progress=False)
    assert summary['skipped'] == ['p2.png (64x61) is smaller than 62 px']
    # p0 is 100x128 after mod-4 crop: rows 0, 24, 48 + 52 (flush with the edge); columns 0, 24, 48, 72 + 80 -> 20
    # p1 is 72x88: rows 0, 24; columns 0, 24 + 40 -> 6
    names = sorted(os.listdir(osp.join(out, 'HR_sub')))
    assert len(names) == 26 and names[0] == 'p0_s001.png' and names[-1] == 'p1_s006.png'
    assert cv2.imread(osp.join(out, 'LR_bicubic', 'X4_sub', 'p1_s006.png')).shape == (12, 12, 3)


def test_subimage_origins_cover_the_far_edge():
    assert subimage_origins(100, 48, 24) == [0, 24, 48, 52]
    assert subimage_origins(100, 48, 24, thresh_size=4) == [0, 24, 48]
    assert subimage_origins(40, 48, 24) == []


def test_errors_name_the_input(tmp_path):
    with pytest.raises(UserError, match='missing_dir does not exist'):
        prepare_paired_folder([str(tmp_path / 'missing_dir')], str(tmp_path / 'o'), show_progress=False)
    (tmp_path / 'empty').mkdir()
    with pytest.raises(UserError, match='no image files'):
        prepare_paired_folder([str(tmp_path / 'empty')], str(tmp_path / 'o'), show_progress=False)
    bad = tmp_path / 'bad'
    bad.mkdir()
    (bad / 'broken.png').write_bytes(b'\x89PNG garbage')
    with pytest.raises(UserError, match=r'broken.png is truncated \(the end of the file is missing\)'):
        prepare_paired_folder([str(bad)], str(tmp_path / 'o'), workers=1, show_progress=False)
    (bad / 'broken.png').write_bytes(b'this is text, not an image')
    with pytest.raises(UserError, match='broken.png cannot be read as an image'):
        prepare_paired_folder([str(bad)], str(tmp_path / 'o'), workers=1, show_progress=False)


def test_benchmark_mode_reproduces_published_set5_lr(tmp_path):
    hr = osp.join(SHARED_DATASETS, 'Set5', 'HR')
    published_lr = osp.join(SHARED_DATASETS, 'Set5', 'LR_bicubic', 'X3')
    require_shared(hr, published_lr)
    out = str(tmp_path / 'Set5')
    prepare_paired_folder([hr], out, scales=(3, ), mod_crop_hr=False, keep_channels=True, show_progress=False)
    for name in sorted(os.listdir(hr)):
        assert np.array_equal(cv2.imread(osp.join(out, 'HR', name)), cv2.imread(osp.join(hr, name)))
        ours = cv2.imread(osp.join(out, 'LR_bicubic', 'X3', name), cv2.IMREAD_UNCHANGED)
        published = cv2.imread(osp.join(published_lr, name), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(ours, published), name


def test_subimage_lr_is_the_crop_of_the_full_image_lr(hr_folder, tmp_path):
    out = str(tmp_path / 'sub')
    prepare_paired_folder([hr_folder], out, scales=(2, 4), crop_size=48, step=24, workers=1, show_progress=False)
    full = cv2.imread(osp.join(hr_folder, 'p0.png'))[:100, :128]  # mod-crop to lcm(2, 4)
    for s in (2, 4):
        lr_full = imresize(full, 1 / s)
        # p0_s007 is row 1 (y=24), column 1 (x=24) of the 5-column grid
        sub_lr = cv2.imread(osp.join(out, 'LR_bicubic', f'X{s}_sub', 'p0_s007.png'))
        assert np.array_equal(sub_lr, lr_full[24 // s:72 // s, 24 // s:72 // s])
        assert np.array_equal(cv2.imread(osp.join(out, 'HR_sub', 'p0_s007.png')), full[24:72, 24:72])


def test_crop_and_step_must_be_multiples_of_the_scales(hr_folder, tmp_path):
    with pytest.raises(UserError, match=r'--crop-size 48 and --step 20 must be multiples of every scale \(\[3\]'):
        prepare_paired_folder([hr_folder], str(tmp_path / 'o'), scales=(2, 3), crop_size=48, step=20,
                              show_progress=False)
