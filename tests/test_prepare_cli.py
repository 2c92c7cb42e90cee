"""tools/prepare_data.py: what it prints, what it never overwrites, and its error messages."""
import os
import subprocess
import sys
from os import path as osp

import cv2
from conftest import REPO, photo_crops

from srdistill.data.prepare import write_image
from srdistill.data.prepare_cli import main


def _photos(folder, n=2, size=60):
    for i, crop in enumerate(photo_crops(n, size)):
        write_image(crop, osp.join(folder, f'p{i}.png'))
    return folder


def test_folder_prints_option_lines_and_keeps_existing_files_unless_overwrite(tmp_path, capsys):
    photos = _photos(str(tmp_path / 'photos'))
    args = ['folder', '--hr', photos, '--name', 'Mine', '--root', str(tmp_path / 'ds'), '--scales', '4', '--workers',
            '1']
    assert main(args) == 0
    out = capsys.readouterr().out
    assert '2 images -> ' in out and 'Mine/LR_bicubic/X4   (scale: 4)' in out
    lr = tmp_path / 'ds' / 'Mine' / 'LR_bicubic' / 'X4' / 'p0.png'
    assert cv2.imread(str(lr)).shape == (15, 15, 3)
    cv2.imwrite(str(lr), photo_crops(1, 7)[0])  # a 7x7 file of the user's now sits there
    assert main(args) == 0
    assert cv2.imread(str(lr)).shape == (7, 7, 3)  # kept
    assert main(args + ['--overwrite']) == 0
    assert cv2.imread(str(lr)).shape == (15, 15, 3)  # replaced only when asked


def test_refuses_to_write_into_an_input_folder(tmp_path, capsys):
    photos = _photos(str(tmp_path / 'ds' / 'Mine' / 'HR'))
    before = {n: os.stat(osp.join(photos, n)).st_mtime_ns for n in os.listdir(photos)}
    assert main(['folder', '--hr', photos, '--name', 'Mine', '--root', str(tmp_path / 'ds'), '--overwrite']) == 2
    assert 'is also an input folder: preparing there could replace your images' in capsys.readouterr().err
    assert {n: os.stat(osp.join(photos, n)).st_mtime_ns for n in os.listdir(photos)} == before


def test_folder_lmdb(tmp_path, capsys):
    photos = _photos(str(tmp_path / 'photos'), n=3)
    assert main(['folder', '--hr', photos, '--name', 'L', '--root', str(tmp_path), '--scales', '2', '--lmdb']) == 0
    assert 'dataroot_gt: ' in capsys.readouterr().out
    meta = (tmp_path / 'L' / 'LR_bicubic' / 'X2.lmdb' / 'meta_info.txt').read_text().splitlines()
    assert meta == ['p0.png (30,30,3) 1', 'p1.png (30,30,3) 1', 'p2.png (30,30,3) 1']


def test_bad_input_is_one_message_without_traceback(tmp_path):
    (tmp_path / 'empty').mkdir()
    result = subprocess.run([sys.executable, osp.join(REPO, 'tools', 'prepare_data.py'), 'folder', '--hr',
                             str(tmp_path / 'empty'), '--name', 'X', '--root', str(tmp_path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and 'Traceback' not in result.stderr
    assert result.stderr.strip() == f'srdistill: error: no image files (.png .jpg .jpeg .bmp .tif .tiff .webp .ppm ' \
                                    f'.pgm) found in {tmp_path / "empty"}.'
