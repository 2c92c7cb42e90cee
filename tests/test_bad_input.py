"""Bad options and data end in one clear message before anything is written, never in a traceback."""
import os
import shutil
import sys
from os import path as osp

import pytest
from conftest import REPO, make_paired_folder, run_train, write_opt

from srdistill.data.checks import check_paired_folders
from srdistill.train import main
from srdistill.utils.errors import UserError


def _fail(monkeypatch, capsys, root, opt_path, *args):
    """Run the training entry point in-process (``args`` after ``-opt opt_path``); return its error message (it must
    exit with status 2, having written nothing)."""
    monkeypatch.setattr(sys, 'argv', ['train.py', '-opt', str(opt_path), *args])
    with pytest.raises(SystemExit) as exc:
        main(str(root))
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith('srdistill: error: ') and err.count('\n') == 1, err
    assert not (root / 'experiments').exists() and not (root / 'tb_logger').exists()
    return err


def test_sd_x4_without_div2k_says_how_to_prepare_it_no_traceback(tmp_path):
    result = run_train(tmp_path, '-opt', osp.join(REPO, 'options', 'sd_x4.yml'), cwd=tmp_path)
    assert result.returncode == 2
    assert 'Traceback' not in result.stderr
    assert 'datasets.train.dataroot_gt: folder datasets/DIV2K/HR_sub does not exist' in result.stderr
    assert 'DIV2K is not prepared: see datasets/README.md' in result.stderr and '`make demo`' in result.stderr
    assert not (tmp_path / 'experiments').exists()


def test_missing_dataset_folder(tiny_opt, tmp_path, monkeypatch, capsys):
    tiny_opt['datasets']['val']['dataroot_lq'] = str(tmp_path / 'nowhere')
    err = _fail(monkeypatch, capsys, tmp_path, write_opt(tmp_path / 'o.yml', tiny_opt))
    assert f'datasets.val.dataroot_lq: folder {tmp_path / "nowhere"} does not exist' in err
    assert 'tools/prepare_data.py' in err


def test_empty_dataset_folder(tiny_opt, tmp_path, monkeypatch, capsys):
    (tmp_path / 'empty').mkdir()
    tiny_opt['datasets']['train']['dataroot_gt'] = str(tmp_path / 'empty')
    err = _fail(monkeypatch, capsys, tmp_path, write_opt(tmp_path / 'o.yml', tiny_opt))
    assert f'datasets.train.dataroot_gt: folder {tmp_path / "empty"} holds no images' in err


@pytest.mark.parametrize('exits, expected', [
    ([4, 2], 'option `network_g.exits`: exits must be in ascending order, got [4, 2]'),
    ([8], 'option `network_g.exits`: exits must lie in [1, num_block - 1] = [1, 7]'),
])
def test_invalid_exits(tiny_opt, tmp_path, monkeypatch, capsys, exits, expected):
    tiny_opt['network_g'].update(num_block=8, exits=exits)
    assert expected in _fail(monkeypatch, capsys, tmp_path, write_opt(tmp_path / 'o.yml', tiny_opt))


def test_unknown_scale(tiny_opt, tmp_path, monkeypatch, capsys):
    """The architecture says which scales it supports (SRResNet: 2, 3, 4); a scale that is no factor fails first."""
    tiny_opt['scale'] = tiny_opt['network_g']['upscale'] = 5
    tiny_opt['datasets']['train']['gt_size'] = 30
    err = _fail(monkeypatch, capsys, tmp_path, write_opt(tmp_path / 'o.yml', tiny_opt))
    assert 'option `network_g`: upscale must be one of (2, 3, 4), got 5' in err
    tiny_opt['scale'] = 'x4'
    err = _fail(monkeypatch, capsys, tmp_path, write_opt(tmp_path / 'o.yml', tiny_opt))
    assert "option `scale` must be an integer factor >= 2 (the architecture says which it supports), got 'x4'" in err


def test_scale_and_upscale_differ(tiny_opt, tmp_path, monkeypatch, capsys):
    tiny_opt['network_g']['upscale'] = 2
    err = _fail(monkeypatch, capsys, tmp_path, write_opt(tmp_path / 'o.yml', tiny_opt))
    assert 'option `network_g.upscale` (2) differs from `scale` (4)' in err


def test_negative_loss_weight(tiny_opt, tmp_path, monkeypatch, capsys):
    tiny_opt['train']['pixel_opt']['distill_weight'] = -0.1
    err = _fail(monkeypatch, capsys, tmp_path, write_opt(tmp_path / 'o.yml', tiny_opt))
    assert 'option `train.pixel_opt`: distill_weight must be a number >= 0, got -0.1' in err


# --- data checks, called directly -------------------------------------------------------------------------------

@pytest.fixture
def pair(tmp_path):
    return make_paired_folder(str(tmp_path / 'set'), n=3, size=48)


def test_size_mismatch_names_both_files(pair):
    gt, lq = pair
    shutil.copy(osp.join(gt, 'img01.png'), osp.join(lq, 'img01.png'))  # an HR where its LR should be
    with pytest.raises(UserError, match=r'sizes do not match scale 4: HR .*img01.png is 48x48, so its LR should be '
                       r'12x12, but .*LR/img01.png is 48x48'):
        check_paired_folders(gt, lq, 4, 'datasets.train')


def test_lr_without_hr_and_hr_without_lr_are_listed(pair):
    gt, lq = pair
    shutil.copy(osp.join(lq, 'img00.png'), osp.join(lq, 'extra.png'))
    with pytest.raises(UserError, match=r'1 LR image\(s\) in .* have no HR image in .*: extra.png'):
        check_paired_folders(gt, lq, 4, 'datasets.train')
    os.remove(osp.join(lq, 'extra.png'))
    os.remove(osp.join(lq, 'img02.png'))
    with pytest.raises(UserError, match=r'1 HR image\(s\) in .* have no LR image of the same name in .*: img02.png'):
        check_paired_folders(gt, lq, 4, 'datasets.train')


def test_non_image_zero_byte_and_unreadable_files(pair):
    gt, lq = pair
    open(osp.join(gt, 'notes.txt'), 'w').write('hello')
    with pytest.raises(UserError, match=r'holds files that are not images: notes.txt'):
        check_paired_folders(gt, lq, 4, 'datasets.train')
    os.remove(osp.join(gt, 'notes.txt'))
    open(osp.join(gt, 'img01.png'), 'w').close()
    with pytest.raises(UserError, match=r'img01.png is an empty \(zero-byte\) file'):
        check_paired_folders(gt, lq, 4, 'datasets.train')
    open(osp.join(gt, 'img01.png'), 'wb').write(b'not a png at all')
    with pytest.raises(UserError, match=r'img01.png cannot be read as an image'):
        check_paired_folders(gt, lq, 4, 'datasets.train')


def test_patch_larger_than_image_and_inexact_training_sizes(pair, tmp_path):
    gt, lq = pair
    with pytest.raises(UserError, match=r'datasets.train.gt_size: the training patch \(64x64\) is larger than HR '
                       r'image .*img00.png \(48x48\)'):
        check_paired_folders(gt, lq, 4, 'datasets.train', gt_size=64)
    assert check_paired_folders(gt, lq, 4, 'datasets.train', gt_size=48, exact=True) == 3


def test_meta_info_file_naming_missing_files(tiny_opt, tmp_path, monkeypatch, capsys):
    meta = tmp_path / 'meta_info.txt'
    meta.write_text('img00.png (48,48,3) 1\nimg07.png (48,48,3) 1\n')
    tiny_opt['datasets']['train']['meta_info_file'] = str(meta)
    err = _fail(monkeypatch, capsys, tmp_path, write_opt(tmp_path / 'o.yml', tiny_opt))
    assert f'datasets.train.meta_info_file: {meta} names 1 file(s) missing from ' in err and ': img07.png.' in err


def test_incomplete_lmdb(tiny_opt, tmp_path, monkeypatch, capsys):
    (tmp_path / 'gt.lmdb').mkdir()  # e.g. an interrupted packing: no meta_info.txt
    tiny_opt['datasets']['train'].update(dataroot_gt=str(tmp_path / 'gt.lmdb'), io_backend={'type': 'lmdb'})
    err = _fail(monkeypatch, capsys, tmp_path, write_opt(tmp_path / 'o.yml', tiny_opt))
    assert f'datasets.train.dataroot_gt: {tmp_path / "gt.lmdb"} is not a complete LMDB (no ' in err
    assert 'meta_info.txt' in err


# --- distillation options --------------------------------------------------------------------------------------------

@pytest.fixture
def teacher_pth(tmp_path):
    """A valid external teacher: a BasicSR MSRResNet x4 checkpoint (random weights)."""
    import torch
    from basicsr.archs.srresnet_arch import MSRResNet
    path = tmp_path / 'teacher.pth'
    torch.save({'params': MSRResNet(num_feat=8, num_block=2, upscale=4).state_dict()}, path)
    return str(path)


TEACHER = {'type': 'MSRResNet', 'num_feat': 8, 'num_block': 2, 'upscale': 4}


@pytest.mark.parametrize('distill_opts, expected', [
    ([{'type': 'NoSuchLoss'}], "option `train.distill_opts[0]`: No object named 'NoSuchLoss' found in 'loss' registry"),
    ([{'type': 'AttentionTransferLoss'}, {'type': 'FSPLoss', 'sections': 1, 'temperature': 4}],
     'unknown option `train.distill_opts[1].temperature`: loss FSPLoss takes no such argument (it takes '
     'detach_teacher, exits, loss_weight, sections, start_iter, teacher, type, warmup_iter).'),
    ([{'type': 'FeatureAffinityLoss', 'loss_weight': -1}],
     'option `train.distill_opts[0]`: loss_weight must be a number >= 0, got -1'),
    ([{'type': 'FeatureAffinityLoss', 'teacher': 'external'}],
     "option `train.distill_opts[0]`: teacher must be one of ['deepest', 'next', 'peers'], got 'external'"),
    ([{'type': 'L1Loss'}], 'option `train.distill_opts[0]`: L1Loss is not a feature distillation loss'),
    ([{'loss_weight': 1}], 'option `train.distill_opts[0].type` is missing.'),
    (['HintLoss'], 'option `train.distill_opts[0]`: expected a mapping with a `type`'),
    ({'type': 'HintLoss'}, 'option `train.distill_opts` must be a list of loss options'),
    ([{'type': 'HintLoss'}], 'option `train.distill_opts[0]`: HintLoss needs network_g.hint_adapters: true'),
    ([{'type': 'AttentionTransferLoss', 'exits': [4]}],
     "option `train.distill_opts[0].exits`: exits [4] are not students with teacher='deepest' (students: [2])"),
    ([{'type': 'FSPLoss', 'sections': 3}], 'option `train.distill_opts[0]`: `sections: 3` needs at least 3 '
     'blocks per student, but exit(s) [2] have fewer'),
])
def test_bad_distill_opts(tiny_opt, tmp_path, monkeypatch, capsys, distill_opts, expected):
    tiny_opt['train']['distill_opts'] = distill_opts
    err = _fail(monkeypatch, capsys, tmp_path, write_opt(tmp_path / 'o.yml', tiny_opt))
    assert expected in err


def test_pixel_opt_exits_must_be_students(tiny_opt, tmp_path, monkeypatch, capsys):
    tiny_opt['train']['pixel_opt'].update(teacher='next', exits=[1, 2])
    err = _fail(monkeypatch, capsys, tmp_path, write_opt(tmp_path / 'o.yml', tiny_opt))
    assert "option `train.pixel_opt.exits`: exits [1] are not students with teacher='next' (students: [2])" in err
    assert 'network_g has outputs [2, 4]' in err


@pytest.mark.parametrize('key, value, expected', [
    ('amp', 'fp8', "option `train.amp` must be bf16, fp16 or ~ (fp32), got 'fp8'"),
    ('amp', 16, 'option `train.amp` must be bf16, fp16 or ~ (fp32), got 16'),
    ('channels_last', 'yes', "option `train.channels_last` must be true or false, got 'yes'"),
    ('channels_last', 1, 'option `train.channels_last` must be true or false, got 1'),
])
def test_bad_training_switches(tiny_opt, tmp_path, monkeypatch, capsys, key, value, expected):
    tiny_opt['train'][key] = value
    assert expected in _fail(monkeypatch, capsys, tmp_path, write_opt(tmp_path / 'o.yml', tiny_opt))


@pytest.mark.parametrize('prefetch, expected', [
    ({'prefetch_mode': 'gpu'}, "option `datasets.train.prefetch_mode` must be ~, cpu or cuda, got 'gpu'"),
    ({'prefetch_mode': 'cuda'}, 'option `datasets.train.prefetch_mode: cuda` needs `pin_memory: true` beside it'),
])
def test_bad_prefetch_mode(tiny_opt, tmp_path, monkeypatch, capsys, prefetch, expected):
    tiny_opt['datasets']['train'].update(prefetch)
    assert expected in _fail(monkeypatch, capsys, tmp_path, write_opt(tmp_path / 'o.yml', tiny_opt))


@pytest.mark.parametrize('optim, expected', [
    ({'fused': 'yes'}, "option `train.optim_g.fused` must be true or false, got 'yes'"),
    ({'foreach': 1}, 'option `train.optim_g.foreach` must be true or false, got 1'),
    ({'fused': True, 'foreach': True}, 'options `train.optim_g.fused` and `train.optim_g.foreach` cannot both be true'),
])
def test_bad_optimiser_implementation(tiny_opt, tmp_path, monkeypatch, capsys, optim, expected):
    tiny_opt['train']['optim_g'].update(optim)
    assert expected in _fail(monkeypatch, capsys, tmp_path, write_opt(tmp_path / 'o.yml', tiny_opt))


def test_external_teacher_needs_network_t(tiny_opt, tmp_path, monkeypatch, capsys):
    tiny_opt['train']['pixel_opt']['teacher'] = 'external'
    err = _fail(monkeypatch, capsys, tmp_path, write_opt(tmp_path / 'o.yml', tiny_opt))
    assert 'option `train.pixel_opt.teacher: external` needs `network_t`' in err
    assert '`path.pretrain_network_t`' in err


@pytest.mark.parametrize('change, expected', [
    (lambda opt, tmp: opt['path'].pop('pretrain_network_t'), 'option `path.pretrain_network_t` is missing'),
    (lambda opt, tmp: opt['path'].update(pretrain_network_t=str(tmp / 'nowhere.pth')),
     'option `path.pretrain_network_t`: file {tmp}/nowhere.pth does not exist'),
    (lambda opt, tmp: opt['network_t'].update(type='NoSuchNet'),
     "option `network_t`: No object named 'NoSuchNet' found in 'arch' registry"),
    (lambda opt, tmp: opt['network_t'].update(num_blocks=2),
     'unknown option `network_t.num_blocks`; did you mean `network_t.num_block`?'),
    (lambda opt, tmp: opt['network_t'].update(type='MultiExitSRResNet', exits=[5]),
     'option `network_t.exits`: exits must lie in [1, num_block - 1] = [1, 1]'),
    (lambda opt, tmp: opt.update(network_t='MSRResNet'), 'option `network_t`: expected a mapping with a `type`'),
    (lambda opt, tmp: opt['network_t'].update(upscale=2), 'option `network_t`: the teacher upscales x2, but `scale` '
     'is 4'),
    (lambda opt, tmp: opt['network_t'].update(num_feat=16), 'option `path.pretrain_network_t`: {tmp}/teacher.pth does '
     'not fit `network_t` (conv_first.weight has shape [8, 3, 3, 3], network_t expects [16, 3, 3, 3]'),
    (lambda opt, tmp: opt['network_t'].update(num_block=3), 'does not fit `network_t` (missing body.2.conv1.weight'),
    (lambda opt, tmp: (tmp / 'teacher.pth').write_bytes(b'not a checkpoint'),
     'option `path.pretrain_network_t`: {tmp}/teacher.pth: '),  # then compat.load_checkpoint's reason
])
def test_bad_external_teacher(tiny_opt, tmp_path, monkeypatch, capsys, teacher_pth, change, expected):
    tiny_opt['train']['pixel_opt']['teacher'] = 'external'
    tiny_opt['network_t'] = dict(TEACHER)
    tiny_opt['path']['pretrain_network_t'] = teacher_pth
    change(tiny_opt, tmp_path)
    err = _fail(monkeypatch, capsys, tmp_path, write_opt(tmp_path / 'o.yml', tiny_opt))
    assert expected.format(tmp=tmp_path) in err


def test_valid_external_teacher_and_switches_pass_the_checks(tiny_opt, tmp_path, teacher_pth):
    from srdistill.models.train_options import check_train_options
    tiny_opt['train']['pixel_opt'].update(teacher='external', exits=[4])  # the final output is a student here
    tiny_opt['train'].update(amp=None, channels_last=False,
                             distill_opts=[{'type': 'FSPLoss', 'sections': 2}, {'type': 'AttentionTransferLoss'}])
    tiny_opt['network_t'] = dict(TEACHER)
    # param_key_t absent from the file falls back to params, as BasicSR's load_network does; not strict: fewer
    # blocks in network_t than in the file is fine
    tiny_opt['path'].update(pretrain_network_t=teacher_pth, param_key_t='params_ema', strict_load_t=False)
    tiny_opt['network_t']['num_block'] = 1
    check_train_options(tiny_opt, 'o.yml')
    tiny_opt['train']['amp'] = 'bf16'
    check_train_options(tiny_opt, 'o.yml')
