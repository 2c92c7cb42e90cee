"""Every key of a training options file is known, and a bad value is refused, before anything is written.

A misspelled optional key used to be ignored (``manual_seeed: 0`` trained with a random seed), a misspelled required
one, a number YAML read as text or a count of zero was a traceback once the experiment folder existed.
"""
import copy
import sys

import pytest
import torch
from basicsr.utils.registry import LOSS_REGISTRY, MODEL_REGISTRY
from conftest import write_opt
from test_bad_input import TEACHER, _fail

from srdistill.losses.self_distill_loss import SelfDistillationLoss
from srdistill.models.self_distill_model import SelfDistillSRModel
from srdistill.models.train_options import check_train_options
from srdistill.utils.errors import UserError
from srdistill.utils.option_keys import check_option_keys


def _rename(section, old, new):
    def change(opt):
        opt_section = opt
        for part in section.split('.') if section else []:
            opt_section = opt_section[part]
        opt_section[new] = opt_section.pop(old) if old in opt_section else 1
    return change


@pytest.mark.parametrize('change, expected', [
    (_rename('', 'manual_seed', 'manual_seeed'), 'unknown option `manual_seeed`; did you mean `manual_seed`?'),
    (lambda o: o['train'].update(ema_decy=0.999), 'unknown option `train.ema_decy`; did you mean `train.ema_decay`?'),
    (_rename('logger', 'save_checkpoint_freq', 'save_checkpoint_frq'),
     'unknown option `logger.save_checkpoint_frq`; did you mean `logger.save_checkpoint_freq`?'),
    (_rename('datasets.train', 'use_hflip', 'use_hlip'),
     'unknown option `datasets.train.use_hlip`; did you mean `datasets.train.use_hflip`?'),
    (_rename('datasets.train', 'gt_size', 'gtsize'),
     'unknown option `datasets.train.gtsize`; did you mean `datasets.train.gt_size`?'),
    (_rename('network_g', 'num_feat', 'num_feats'), 'unknown option `network_g.num_feats`; did you mean '
     '`network_g.num_feat`?'),
    (_rename('train.pixel_opt', 'distill_weight', 'distil_weight'),
     'unknown option `train.pixel_opt.distil_weight`; did you mean `train.pixel_opt.distill_weight`?'),
    (_rename('train.optim_g', 'betas', 'beta'), 'unknown option `train.optim_g.beta`; did you mean '
     '`train.optim_g.betas`?'),
    (_rename('train.scheduler', 'gamma', 'gama'), 'unknown option `train.scheduler.gama`; did you mean '
     '`train.scheduler.gamma`?'),
    (_rename('val.metrics.psnr', 'crop_border', 'crop_boder'),
     'unknown option `val.metrics.psnr.crop_boder`; did you mean `val.metrics.psnr.crop_border`?'),
    (lambda o: o['train'].update(distill_opts=[{'type': 'AttentionTransferLoss', 'loss_wieght': 1}]),
     'unknown option `train.distill_opts[0].loss_wieght`; did you mean `train.distill_opts[0].loss_weight`?'),
    (_rename('datasets.train.io_backend', 'type', 'typ'),
     'unknown option `datasets.train.io_backend.typ`; did you mean `datasets.train.io_backend.type`?'),
    (_rename('datasets', 'val', 'vall'), 'unknown option `datasets.vall`; did you mean `datasets.val`?'),
    (_rename('', 'train', 'trian'), 'unknown option `trian`; did you mean `train`?'),
    (lambda o: o['path'].update(pretrain_network_gg='x.pth'),
     'unknown option `path.pretrain_network_gg`; did you mean `path.pretrain_network_g`?'),
    (lambda o: o['logger'].update(wandb={'projet': 'x'}),
     'unknown option `logger.wandb.projet`; did you mean `logger.wandb.project`?'),
    # right key, wrong section
    (lambda o: o.update(ema_decay=0.999), 'unknown option `ema_decay`; it is an option of `train`: `train.ema_decay`.'),
    # nothing close: the known keys are listed
    (lambda o: o['logger'].update(colour=True), 'unknown option `logger.colour`: BasicSR (SelfDistillSRModel) reads '
     'no such key (it reads print_freq, save_checkpoint_freq, use_tb_logger, wandb).'),
    (lambda o: o['datasets'].update(test=o['datasets']['val']), 'unknown option `datasets.test`: BasicSR (train.py) '
     'reads no such key (it reads train, val).'),
])
def test_unknown_key_names_the_closest_known_one(tiny_opt, tmp_path, monkeypatch, capsys, change, expected):
    change(tiny_opt)
    err = _fail(monkeypatch, capsys, tmp_path, write_opt(tmp_path / 'o.yml', tiny_opt))
    assert err == f'srdistill: error: {tmp_path / "o.yml"}: {expected}\n'


@pytest.mark.parametrize('section, key, expected', [
    ('logger', 'save_checkpoint_freq', 'option `logger.save_checkpoint_freq` is missing (BasicSR (SelfDistillSRModel) '
     'needs it).'),
    ('logger', 'use_tb_logger', 'option `logger.use_tb_logger` is missing'),
    ('datasets.train', 'gt_size', 'option `datasets.train.gt_size` is missing (dataset PairedImageDataset needs it).'),
    ('datasets.train', 'use_rot', 'option `datasets.train.use_rot` is missing'),
    ('datasets.train', 'batch_size_per_gpu', 'option `datasets.train.batch_size_per_gpu` is missing'),
    ('datasets.val', 'name', 'option `datasets.val.name` is missing'),
    ('train', 'total_iter', 'option `train.total_iter` is missing'),
    ('train', 'scheduler', 'option `train.scheduler` is missing'),
    ('train.scheduler', 'milestones', 'option `train.scheduler.milestones` is missing (MultiStepLR (as BasicSR builds '
     'it) needs it).'),
    ('train.optim_g', 'lr', 'option `train.optim_g.lr` is missing'),
    ('val', 'save_img', 'option `val.save_img` is missing'),
    ('val.metrics.psnr', 'crop_border', 'option `val.metrics.psnr.crop_border` is missing (metric calculate_psnr_y '
     'needs it).'),
])
def test_missing_required_key(tiny_opt, tmp_path, monkeypatch, capsys, section, key, expected):
    opt_section = tiny_opt
    for part in section.split('.'):
        opt_section = opt_section[part]
    del opt_section[key]
    assert expected in _fail(monkeypatch, capsys, tmp_path, write_opt(tmp_path / 'o.yml', tiny_opt))


@pytest.mark.parametrize('change, expected', [
    (lambda o: o['train'].update(total_iter='abc'), "option `train.total_iter` must be a whole number >= 1, got 'abc'"),
    (lambda o: o['train'].update(total_iter=2.5), 'option `train.total_iter` must be a whole number >= 1, got 2.5'),
    (lambda o: o['datasets']['train'].update(batch_size_per_gpu=0),
     'option `datasets.train.batch_size_per_gpu` must be an integer >= 1, got 0'),
    (lambda o: o['datasets']['train'].update(num_worker_per_gpu=-1),
     'option `datasets.train.num_worker_per_gpu` must be an integer >= 0, got -1'),
    (lambda o: o['datasets']['train'].update(gt_size=30),
     'option `datasets.train.gt_size` (30) must be a multiple of `scale` (4): the LR patch is gt_size / 4 pixels. '
     'Use 28 or 32.'),
    (lambda o: o['datasets']['train'].update(gt_size=2), 'option `datasets.train.gt_size` (2) must be a multiple of '
     '`scale` (4)'),
    (lambda o: o['datasets']['train'].update(gt_size=0), 'option `datasets.train.gt_size` must be an integer >= 1'),
    (lambda o: o['network_g'].update(num_feat=0), 'option `network_g.num_feat`: conv_first.weight would have shape '
     '[0, 3, 3, 3], no weights; sizes (channels, blocks) must be at least 1.'),
    (lambda o: o['train']['optim_g'].update(lr='fast'), "option `train.optim_g.lr` must be a number >= 0, got 'fast'"),
    (lambda o: o['train']['optim_g'].update(eps='small'), "option `train.optim_g.eps` must be a number (default "
     "1e-08), got 'small'"),
    (lambda o: o['train']['optim_g'].update(type='AdamW'), "option `train.optim_g.type`: BasicSR 1.4.2 builds Adam, "
     "not 'AdamW'; did you mean `Adam`?"),
    (lambda o: o['train']['scheduler'].update(type='StepLR'), "option `train.scheduler.type`: BasicSR 1.4.2 builds "
     "MultiStepLR, MultiStepRestartLR, CosineAnnealingRestartLR, not 'StepLR'; did you mean `MultiStepLR`?"),
    (lambda o: o.update(model_type='SelfDistilSRModel'), "option `model_type`: no model named 'SelfDistilSRModel' is "
     "registered; did you mean `SelfDistillSRModel`?"),
    (lambda o: o['datasets']['val'].update(type='PairedImageDataste'), "option `datasets.val.type`: no dataset named "
     "'PairedImageDataste' is registered; did you mean `PairedImageDataset`?"),
    (lambda o: o['val']['metrics']['psnr'].update(type='calculate_psnr_yy'), "option `val.metrics.psnr.type`: no "
     "metric named 'calculate_psnr_yy' is registered; did you mean `calculate_psnr_y`?"),
    (lambda o: o['network_g'].update(type='MultiExitSRResnet'), "option `network_g`: No object named "
     "'MultiExitSRResnet' found in 'arch' registry; did you mean `MultiExitSRResNet`?"),
    (lambda o: o['train'].update(ema_decay=1.5), 'option `train.ema_decay` must be a number in [0, 1)'),
    (lambda o: o['val'].update(val_freq=0), 'option `val.val_freq` must be a number >= 1, got 0'),
    (lambda o: o['datasets']['train'].update(dataset_enlarge_ratio=0),
     'option `datasets.train.dataset_enlarge_ratio` must be a number > 0, got 0.'),
    (lambda o: o.update(manual_seed=-1), 'option `manual_seed` must be an integer >= 0, got -1'),
    (lambda o: o.update(path=None), 'option `path` is missing'),
    (lambda o: o.update(path='experiments'), "option `path` must be a mapping of options (key: value lines); got "
     "'experiments'."),
    (lambda o: o['datasets'].update(train='data/train'), "option `datasets.train` must be a mapping of options "
     "(key: value lines); got 'data/train'."),
])
def test_bad_value(tiny_opt, tmp_path, monkeypatch, capsys, change, expected):
    change(tiny_opt)
    assert expected in _fail(monkeypatch, capsys, tmp_path, write_opt(tmp_path / 'o.yml', tiny_opt))


@pytest.mark.parametrize('key, text, path', [
    ('lr', '2e-4', 'train.optim_g.lr'), ('total_iter', '4e0', 'train.total_iter'),
    ('eta_min', '1.0e7', 'train.scheduler.eta_min'),
])
def test_e_notation_that_yaml_reads_as_text(tiny_opt, tmp_path, monkeypatch, capsys, key, text, path):
    tiny_opt['train']['scheduler'] = {'type': 'CosineAnnealingRestartLR', 'periods': [4], 'eta_min': 0}
    opt_path = write_opt(tmp_path / 'o.yml', tiny_opt)
    lines = [ln.split(':')[0] + f': {text}' if ln.strip().startswith(f'{key}:') else ln
             for ln in open(opt_path).read().splitlines()]
    open(opt_path, 'w').write('\n'.join(lines))  # as a user writes it: no quotes, no !!float
    err = _fail(monkeypatch, capsys, tmp_path, opt_path)
    assert f"option `{path}` is the text '{text}', not a number" in err
    assert f"Write `{key}: !!float {text}` (BasicSR's convention)." in err


def test_missing_zero_byte_and_misfit_pretrain_network_g(tiny_opt, tmp_path, monkeypatch, capsys):
    from basicsr.archs.srresnet_arch import MSRResNet
    tiny_opt['path']['pretrain_network_g'] = str(tmp_path / 'nowhere.pth')
    err = _fail(monkeypatch, capsys, tmp_path, write_opt(tmp_path / 'o.yml', tiny_opt))
    assert f'option `path.pretrain_network_g`: file {tmp_path}/nowhere.pth does not exist.' in err
    (tmp_path / 'empty.pth').write_bytes(b'')
    tiny_opt['path']['pretrain_network_g'] = str(tmp_path / 'empty.pth')
    err = _fail(monkeypatch, capsys, tmp_path, write_opt(tmp_path / 'o.yml', tiny_opt))
    assert f'option `path.pretrain_network_g`: {tmp_path}/empty.pth: not a loadable PyTorch checkpoint (EOFError).' \
        in err
    torch.save({'params': MSRResNet(num_feat=16, num_block=4, upscale=4).state_dict()}, tmp_path / 'other.pth')
    tiny_opt['path']['pretrain_network_g'] = str(tmp_path / 'other.pth')
    err = _fail(monkeypatch, capsys, tmp_path, write_opt(tmp_path / 'o.yml', tiny_opt))
    assert f'{tmp_path}/other.pth does not fit `network_g` (conv_first.weight has shape [16, 3, 3, 3], network_g ' \
        'expects [8, 3, 3, 3]' in err


def test_zero_byte_teacher_checkpoint_gets_one_line(tiny_opt, tmp_path, monkeypatch, capsys):
    (tmp_path / 'teacher.pth').write_bytes(b'')
    tiny_opt['train']['pixel_opt']['teacher'] = 'external'
    tiny_opt['network_t'] = dict(TEACHER)
    tiny_opt['path']['pretrain_network_t'] = str(tmp_path / 'teacher.pth')
    err = _fail(monkeypatch, capsys, tmp_path, write_opt(tmp_path / 'o.yml', tiny_opt))
    assert f'option `path.pretrain_network_t`: {tmp_path}/teacher.pth: not a loadable PyTorch checkpoint (EOFError).' \
        in err


@pytest.mark.parametrize('entry, expected', [
    # the form is compat.check_force_yml's; the keys and values are checked as the file's are
    ('train:total_iter', '--force_yml train:total_iter: expected key:subkey=value (one "=",'),
    ('train:total_iter=1=2', '--force_yml train:total_iter=1=2: expected key:subkey=value'),
    ('train:ema_decy=0.9', '{opt} (with --force_yml train:ema_decy=0.9): unknown option `train.ema_decy`; did you '
     'mean `train.ema_decay`?'),
    ('trian:ema_decay=0.9', '{opt} (with --force_yml trian:ema_decay=0.9): the options have no section `trian`'),
    ('train:optim_g:lr=2e-4', "{opt} (with --force_yml train:optim_g:lr=2e-4): `train.optim_g.lr` is the text '2e-4', "
     'not a number; write train:optim_g:lr=!!float2e-4'),
])
def test_force_yml(tiny_opt, tmp_path, monkeypatch, capsys, entry, expected):
    opt_path = write_opt(tmp_path / 'o.yml', tiny_opt)
    err = _fail(monkeypatch, capsys, tmp_path, opt_path, '--force_yml', entry)
    assert expected.format(opt=opt_path) in err


def test_a_section_typo_that_basicsr_trips_on_while_parsing(tiny_opt, tmp_path, monkeypatch, capsys):
    tiny_opt['num_gpus'] = tiny_opt.pop('num_gpu')  # parse_options reads opt['num_gpu']: a KeyError there
    err = _fail(monkeypatch, capsys, tmp_path, write_opt(tmp_path / 'o.yml', tiny_opt))
    assert 'unknown option `num_gpus`; did you mean `num_gpu`?' in err


def test_keys_basicsr_adds_while_parsing_pass(tiny_opt, tmp_path, monkeypatch):
    """The options as parse_options returns them (debug, auto_resume), and as the dataset leaves io_backend."""
    from basicsr.utils.options import parse_options
    opt_path = write_opt(tmp_path / 'o.yml', tiny_opt)
    monkeypatch.setattr(sys, 'argv', ['train.py', '-opt', opt_path, '--auto_resume', '--debug'])
    opt, _ = parse_options(str(tmp_path), is_train=True)
    opt['root_path'] = str(tmp_path)
    opt['datasets']['train']['io_backend'].update(db_paths=['a', 'b'], client_keys=['lq', 'gt'])
    added = {'is_train', 'dist', 'rank', 'world_size', 'auto_resume', 'root_path'}
    assert added <= set(opt) and {'phase', 'scale'} <= set(opt['datasets']['val'])
    assert {'experiments_root', 'models', 'training_states', 'log', 'visualization'} <= set(opt['path'])
    check_train_options(opt, opt_path)
    assert not (tmp_path / 'experiments').exists()


def test_benchmark_options_pass(tiny_opt, tmp_path):
    from srdistill.benchmark.data_wait import load_train_options
    tiny_opt['datasets']['train'].update(dataroot_gt='data/gt', prefetch_mode='cuda', pin_memory=True)
    opt = load_train_options(write_opt(tmp_path / 'o.yml', tiny_opt), 'cpu', root=str(tmp_path), num_worker=0,
                             amp='fp32')
    check_option_keys(opt, 'o.yml')
    # BasicSR's parse_options filled these in; the benchmark's own changes follow
    assert (opt['is_train'], opt['dist'], opt['rank'], opt['world_size'], opt['auto_resume']) == (True, False, 0, 1,
                                                                                                 False)
    assert opt['manual_seed'] == tiny_opt['manual_seed'] and opt['path']['experiments_root'].startswith(str(tmp_path))
    train = opt['datasets']['train']
    assert list(opt['datasets']) == ['train'] and (train['phase'], train['scale']) == ('train', tiny_opt['scale'])
    assert train['dataroot_gt'] == str(tmp_path / 'data/gt') and train['num_worker_per_gpu'] == 0
    assert (opt['num_gpu'], opt['path']['resume_state'], opt['train']['amp']) == (0, None, None)
    assert (train['prefetch_mode'], train['pin_memory']) == ('cpu', False)  # the CPU fallback, as training
    assert not (tmp_path / 'experiments').exists()


def test_benchmark_options_basicsr_cannot_parse(tiny_opt, tmp_path):
    from srdistill.benchmark.data_wait import load_train_options
    tiny_opt['num_gpus'] = tiny_opt.pop('num_gpu')  # parse_options reads opt['num_gpu']
    with pytest.raises(UserError, match='unknown option `num_gpus`; did you mean `num_gpu`?'):
        load_train_options(write_opt(tmp_path / 'o.yml', tiny_opt), 'cpu', root=str(tmp_path))
    tiny_opt['num_gpu'] = tiny_opt.pop('num_gpus')
    del tiny_opt['datasets']['train']
    with pytest.raises(UserError, match='option `datasets.train` is missing'):
        load_train_options(write_opt(tmp_path / 'o.yml', tiny_opt), 'cpu', root=str(tmp_path))
    tiny_opt['datasets']['train'] = {'type': 'PairedImageDataset'}
    with pytest.raises(UserError, match='amp must be bf16, fp16, fp32, got .fp8.'):
        load_train_options(write_opt(tmp_path / 'o.yml', tiny_opt), 'cpu', root=str(tmp_path), amp='fp8')


# A registered subclass passes where its base does: the checks ask the class, not the type's name
@LOSS_REGISTRY.register()
class _StrictTestSelfDistillationLoss(SelfDistillationLoss):
    pass


@MODEL_REGISTRY.register()
class _StrictTestSelfDistillSRModel(SelfDistillSRModel):
    option_keys = {'train': {'my_switch': 'optional'}}


def test_subclasses_of_the_loss_and_the_model(tiny_opt, tmp_path):
    tiny_opt['train']['pixel_opt']['type'] = '_StrictTestSelfDistillationLoss'
    check_train_options(tiny_opt, 'o.yml')
    tiny_opt['model_type'] = '_StrictTestSelfDistillSRModel'
    tiny_opt['train']['my_switch'] = True  # its own key, from option_keys
    check_train_options(tiny_opt, 'o.yml')
    tiny_opt['train']['ema_decy'] = 0.9  # and the inherited vocabulary still holds
    with pytest.raises(Exception, match='did you mean `train.ema_decay`'):
        check_train_options(tiny_opt, 'o.yml')
    del tiny_opt['train']['ema_decy']
    tiny_opt['train']['pixel_opt'] = {'type': 'L1Loss'}
    with pytest.raises(Exception, match='must be SelfDistillationLoss \\(or a subclass\\) for model_type '
                       '_StrictTestSelfDistillSRModel'):
        check_train_options(tiny_opt, 'o.yml')


def test_a_registered_loss_subclass_trains_and_validates_as_its_base(tiny_opt, tmp_path):
    """The subclass the checks accept is the one the model trains with: same terms, weights and validation."""
    from basicsr.data import build_dataloader, build_dataset
    from basicsr.utils import set_random_seed
    from test_model import _batch, _model
    results = {}
    for loss_type in ('SelfDistillationLoss', '_StrictTestSelfDistillationLoss'):
        opt = copy.deepcopy(tiny_opt)
        opt['train']['pixel_opt']['type'] = loss_type
        check_train_options(opt, 'o.yml')
        set_random_seed(0)  # the same initial weights and the same random crops for both
        opt, model = _model(opt, tmp_path / loss_type)
        assert type(model.cri_pix).__name__ == loss_type
        model.feed_data(_batch(opt))
        model.optimize_parameters(1)
        opt['datasets']['val']['phase'] = 'val'
        loader = build_dataloader(build_dataset(opt['datasets']['val']), opt['datasets']['val'], num_gpu=0,
                                  dist=False)
        model.validation(loader, current_iter=1, tb_logger=None, save_img=False)
        results[loss_type] = (dict(model.log_dict), model.net_g.state_dict(), dict(model.metric_results))
    (base_log, base_weights, base_metrics), (sub_log, sub_weights, sub_metrics) = results.values()
    assert set(base_log) == {'l_pix_e2', 'l_distill_e2', 'l_pix_e4', 'l_total'} and base_log == sub_log
    assert all(torch.equal(base_weights[k], sub_weights[k]) for k in base_weights)
    assert list(sub_metrics) == ['psnr_e2', 'ssim_e2', 'psnr_e4', 'ssim_e4'] and sub_metrics == base_metrics


def test_amp_values_are_one_definition():
    from srdistill.utils.amp import NAMES, amp_dtype
    assert NAMES == ('bf16', 'fp16', 'fp32')  # the benchmark's --data-amp choices
    assert [amp_dtype(v) for v in (None, False, 'none', 'fp32', 'bf16', 'fp16')] == \
        [None, None, None, None, torch.bfloat16, torch.float16]
    for bad in (0, True, 'fp8', 16):
        with pytest.raises(ValueError, match='train.amp must be bf16, fp16 or ~ \\(fp32\\)'):
            amp_dtype(bad)
