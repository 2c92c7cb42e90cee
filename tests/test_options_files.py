"""Every shipped training options file passes the up-front checks up to its data (network, losses, switches)."""
import sys
from os import path as osp

import pytest
from conftest import REPO

from srdistill.train import main

# file -> (missing training folder, what the message says to do)
TRAINING_FILES = {
    'sd_x4.yml': ('datasets/DIV2K/HR_sub', 'DIV2K is not prepared'),
    'sd_x4_r50.yml': ('datasets/DIV2K/HR_sub', 'DIV2K is not prepared'),
    'sd_x4_r100.yml': ('datasets/DIV2K/HR_sub', 'DIV2K is not prepared'),
    'baseline_srresnet8_x4.yml': ('datasets/DIV2K/HR_sub', 'DIV2K is not prepared'),
    'sd_x4_291.yml': ('datasets/291/HR_npy', '--npy'),
    'baseline_srresnet8_x4_291.yml': ('datasets/291/HR_npy', '--npy'),
    'sd_x4_291_png.yml': ('datasets/291/HR', 'tools/prepare_data.py folder'),
}


def test_every_training_options_file_is_listed():
    import glob
    shipped = {osp.basename(p) for p in glob.glob(osp.join(REPO, 'options', '*.yml'))}
    others = {'demo_x4.yml', 'test_sd_x4.yml', 'ablation_291.yml'}  # the demo prepares its data; not training files
    assert shipped - others == set(TRAINING_FILES)


@pytest.mark.parametrize('name', sorted(TRAINING_FILES))
def test_checks_pass_up_to_the_missing_data(name, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no datasets/ here
    monkeypatch.setattr(sys, 'argv', ['train.py', '-opt', osp.join(REPO, 'options', name)])
    with pytest.raises(SystemExit) as exc:
        main(str(tmp_path))
    assert exc.value.code == 2
    err = capsys.readouterr().err
    folder, hint = TRAINING_FILES[name]
    assert f'datasets.train.dataroot_gt: folder {folder} does not exist.' in err and hint in err, err
    assert not (tmp_path / 'experiments').exists()
