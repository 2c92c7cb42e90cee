"""Each distillation method trains from its options on real image crops: one step in-process per method, and the real
training entry point for the feature losses together and for an external teacher (resumed with --auto_resume)."""
import copy
import hashlib
import math
import re

import pytest
import torch
from basicsr.archs.srresnet_arch import MSRResNet
from conftest import run_train, write_opt
from test_model import _batch, _model

from srdistill.archs.checkpoints import load_checkpoint

TINY_NET = {'type': 'MultiExitSRResNet', 'num_feat': 8, 'num_block': 4, 'exits': [1, 2], 'upscale': 4}
TEACHER_NET = {'type': 'MSRResNet', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_block': 2, 'upscale': 4}
FEATURE_LOSSES = [
    {'type': 'HintLoss', 'loss_weight': 0.5},
    {'type': 'AttentionTransferLoss', 'loss_weight': 10},
    {'type': 'FSPLoss', 'loss_weight': 1, 'sections': 1},
    {'type': 'FeatureAffinityLoss', 'loss_weight': 1},
]
PIXEL = ['l_pix_e1', 'l_pix_e2', 'l_pix_e4']
OUTPUT_DISTILL = ['l_distill_e1', 'l_distill_e2']


@pytest.fixture
def teacher_ckpt(tmp_path):
    """A randomly initialised BasicSR MSRResNet saved as a BasicSR checkpoint: a (poor but valid) external teacher."""
    torch.manual_seed(123)
    path = tmp_path / 'teacher' / 'net_t.pth'
    path.parent.mkdir()
    torch.save({'params': MSRResNet(**{k: v for k, v in TEACHER_NET.items() if k != 'type'}).state_dict()}, path)
    return str(path)


def _configure(opt, method, teacher_ckpt=None):
    opt['network_g'] = dict(TINY_NET)
    pixel = opt['train']['pixel_opt']
    if method == 'l2':
        pixel['criterion'] = 'l2'
    elif method in ('next', 'peers', 'external'):
        pixel['teacher'] = method
    if method == 'external':
        opt['network_t'] = dict(TEACHER_NET)
        opt['path']['pretrain_network_t'] = teacher_ckpt
    if method == 'hint':
        opt['network_g']['hint_adapters'] = True
    feature = {'hint': FEATURE_LOSSES[0], 'at': FEATURE_LOSSES[1], 'fakd': FEATURE_LOSSES[3],
               'fsp': {'type': 'FSPLoss', 'sections': 2, 'exits': [2]}}.get(method)
    if feature:
        opt['train']['distill_opts'] = [dict(feature)]
    return opt


EXPECTED_KEYS = {
    'l2': PIXEL + OUTPUT_DISTILL,
    'next': PIXEL + OUTPUT_DISTILL,
    'peers': PIXEL + OUTPUT_DISTILL + ['l_distill_e4'],  # mutual: the final output learns too
    'external': PIXEL + OUTPUT_DISTILL + ['l_distill_e4'],  # every output learns from the external teacher
    'hint': PIXEL + OUTPUT_DISTILL + ['l_hint_e1', 'l_hint_e2'],
    'at': PIXEL + OUTPUT_DISTILL + ['l_at_e1', 'l_at_e2'],
    'fsp': PIXEL + OUTPUT_DISTILL + ['l_fsp_e2'],  # sections: 2 with exits: [2] (exit 1 has only one block)
    'fakd': PIXEL + OUTPUT_DISTILL + ['l_fakd_e1', 'l_fakd_e2'],
}


@pytest.mark.parametrize('method', list(EXPECTED_KEYS))
def test_one_step_of_each_method(tiny_opt, tmp_path, teacher_ckpt, method):
    torch.manual_seed(0)
    opt, model = _model(_configure(tiny_opt, method, teacher_ckpt), tmp_path)
    before = {k: v.clone() for k, v in model.net_g.state_dict().items()}
    model.feed_data(_batch(opt))
    model.optimize_parameters(1)

    assert set(model.log_dict) == set(EXPECTED_KEYS[method]) | {'l_total'}
    assert all(math.isfinite(v) and v >= 0 for v in model.log_dict.values())
    assert all(v > 0 for k, v in model.log_dict.items() if k != 'l_total')
    terms = sum(v for k, v in model.log_dict.items() if k != 'l_total')
    assert model.log_dict['l_total'] == pytest.approx(terms, rel=1e-5)
    after = model.net_g.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    for prefix in ('conv_first.', 'body.0.', 'body.3.', 'exit_tails.1.', 'exit_tails.2.', 'conv_last.'):
        assert any(k.startswith(prefix) for k in changed), f'{prefix} did not change'
    if method == 'hint':  # the adapters train with the network
        assert {'hint_adapters.1.weight', 'hint_adapters.2.weight', 'hint_adapters.1.bias'} <= changed


def test_external_teacher_stays_frozen_and_out_of_the_checkpoint(tiny_opt, tmp_path, teacher_ckpt):
    torch.manual_seed(0)
    opt, model = _model(_configure(tiny_opt, 'external', teacher_ckpt), tmp_path)
    saved = torch.load(teacher_ckpt, weights_only=True)['params']
    assert all(torch.equal(v, saved[k]) for k, v in model.net_t.state_dict().items())  # loaded from the file
    assert not model.net_t.training and not any(p.requires_grad for p in model.net_t.parameters())
    optimised = {id(p) for group in model.optimizer_g.param_groups for p in group['params']}
    assert not optimised & {id(p) for p in model.net_t.parameters()}

    batch = _batch(opt)
    for it in (1, 2):
        model.feed_data(batch)
        model.optimize_parameters(it)
    assert all(torch.equal(v, saved[k]) for k, v in model.net_t.state_dict().items())
    # the distillation term is the L1 distance to the teacher's SR image, x 0.1
    with torch.no_grad():
        final = model.net_g(model.lq)
        expected = 0.1 * (final - model.net_t(model.lq)).abs().mean().item()
        _, terms = model.cri_pix(model.net_g(model.lq, exit='all'), model.gt, external=model.net_t(model.lq))
    assert terms['l_distill_e4'].item() == pytest.approx(expected, rel=1e-6)

    (tmp_path / 'models').mkdir()
    (tmp_path / 'states').mkdir()
    model.save(0, 2)
    assert sorted(p.name for p in (tmp_path / 'models').iterdir()) == ['net_g_2.pth']
    assert not any(k.startswith('net_t') for k in torch.load(tmp_path / 'models' / 'net_g_2.pth',
                                                             weights_only=True)['params'])


def test_hint_adapters_are_saved_and_the_checkpoint_evaluates(tiny_opt, tmp_path):
    torch.manual_seed(0)
    opt, model = _model(_configure(tiny_opt, 'hint'), tmp_path)
    model.feed_data(_batch(opt))
    model.optimize_parameters(1)
    (tmp_path / 'models').mkdir()
    (tmp_path / 'states').mkdir()
    model.save(0, 1)
    params = torch.load(tmp_path / 'models' / 'net_g_1.pth', weights_only=True)['params']
    assert {k for k in params if k.startswith('hint_adapters.')} == {
        'hint_adapters.1.weight', 'hint_adapters.1.bias', 'hint_adapters.2.weight', 'hint_adapters.2.bias'}
    assert not torch.equal(params['hint_adapters.1.weight'].flatten(1), torch.eye(8))  # trained off the identity
    net, net_opt = load_checkpoint(str(tmp_path / 'models' / 'net_g_1.pth'))  # strict
    assert net_opt['hint_adapters'] is True and net.depths == (1, 2, 4)
    assert torch.equal(net.hint_adapters['2'].weight, params['hint_adapters.2.weight'])


def _step_loss(opt, tmp_path, batch, **train_options):
    opt = copy.deepcopy(opt)
    opt['train'].update(train_options)
    torch.manual_seed(0)
    _, model = _model(opt, tmp_path)
    model.feed_data(batch)
    model.optimize_parameters(1)
    return model


def test_amp_on_cpu_is_ignored_and_trains_in_fp32(tiny_opt, tmp_path):
    opt = _configure(tiny_opt, 'hint')
    batch = _batch(_model(opt, tmp_path)[0])
    fp32 = _step_loss(opt, tmp_path, batch)
    for amp in ('bf16', 'fp16'):
        model = _step_loss(opt, tmp_path, batch, amp=amp)
        assert model.amp_dtype is None and not model.grad_scaler.is_enabled()
        assert model.output.dtype == torch.float32
        assert model.log_dict == fp32.log_dict  # the very same fp32 computation
        assert all(torch.equal(v, fp32.net_g.state_dict()[k]) for k, v in model.net_g.state_dict().items())


def test_channels_last_gives_the_same_loss(tiny_opt, tmp_path):
    opt = _configure(tiny_opt, 'hint')
    opt['train']['distill_opts'] = copy.deepcopy(FEATURE_LOSSES)
    batch = _batch(_model(opt, tmp_path)[0])
    reference = _step_loss(opt, tmp_path, batch)
    model = _step_loss(opt, tmp_path, batch, channels_last=True)
    assert model.channels_last and model.net_g.conv_first.weight.is_contiguous(memory_format=torch.channels_last)
    assert model.lq.is_contiguous(memory_format=torch.channels_last)
    assert set(model.log_dict) == set(reference.log_dict)
    for key, value in reference.log_dict.items():
        assert model.log_dict[key] == pytest.approx(value, rel=1e-5, abs=1e-5), key
    after = reference.net_g.state_dict()
    assert all(torch.allclose(v, after[k], atol=1e-5) for k, v in model.net_g.state_dict().items())


# --- the real training entry point -----------------------------------------------------------------------------------

def _without_validation(opt):
    """Validation of every exit is tested in test_model.py; here it would only cost time."""
    opt.pop('val')
    opt['datasets'].pop('val')
    opt['logger']['use_tb_logger'] = False
    return opt


def _log(root, name):
    return '\n'.join(p.read_text() for p in sorted((root / 'experiments' / name).glob('train_*.log')))


def test_feature_losses_together_from_yaml(tiny_opt, tmp_path):
    opt = _configure(tiny_opt, 'hint')
    opt['name'] = 'tiny_features'
    opt['train'].update(distill_opts=copy.deepcopy(FEATURE_LOSSES), amp='bf16', total_iter=2)
    _without_validation(opt)
    result = run_train(tmp_path, '-opt', write_opt(tmp_path / 'features.yml', opt))
    assert result.returncode == 0, result.stderr[-3000:]

    log = _log(tmp_path, 'tiny_features')
    for it in (1, 2):
        line = next(li for li in log.splitlines() if f'iter:       {it},' in li)
        values = {k: float(v) for k, v in re.findall(r'(l_\w+): (\S+)', line)}
        assert sorted(values) == sorted(['l_pix_e1', 'l_distill_e1', 'l_pix_e2', 'l_distill_e2', 'l_pix_e4', 'l_total']
                                        + [f'l_{n}_e{d}' for n in ('hint', 'at', 'fsp', 'fakd') for d in (1, 2)])
        assert all(math.isfinite(v) and v >= 0 for v in values.values()), line
    assert 'train.amp: bf16 applies on CUDA only; training in fp32 on cpu' in log

    ckpt = tmp_path / 'experiments' / 'tiny_features' / 'models' / 'net_g_2.pth'
    params = torch.load(ckpt, weights_only=True)['params']
    assert sorted(k for k in params if k.startswith('hint_adapters.')) == [
        'hint_adapters.1.bias', 'hint_adapters.1.weight', 'hint_adapters.2.bias', 'hint_adapters.2.weight']
    assert all(math.isfinite(v.abs().sum().item()) for v in params.values())
    net, net_opt = load_checkpoint(str(ckpt))
    assert net_opt['hint_adapters'] is True and net.depths == (1, 2, 4)


def test_external_teacher_from_yaml_and_auto_resume(tiny_opt, tmp_path, teacher_ckpt):
    opt = _configure(tiny_opt, 'external', teacher_ckpt)
    opt['name'] = 'tiny_external'
    opt['train'].update(total_iter=2, channels_last=True)
    _without_validation(opt)
    opt_path = write_opt(tmp_path / 'external.yml', opt)
    teacher_hash = hashlib.sha256(open(teacher_ckpt, 'rb').read()).hexdigest()
    root = tmp_path / 'proj'
    root.mkdir()
    result = run_train(root, '-opt', opt_path)
    assert result.returncode == 0, result.stderr[-3000:]
    log = _log(root, 'tiny_external')
    assert f'Loading MSRResNet model from {teacher_ckpt}' in log
    assert 'l_distill_e4' in log and 'l_distill_e1' in log

    # resume: the teacher still comes from path.pretrain_network_t (only net_g is in models/)
    result = run_train(root, '-opt', opt_path, '--auto_resume', '--force_yml', 'train:total_iter=4')
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'Auto-resume: found' in result.stdout
    assert 'Set pretrain_network_g to' in result.stdout and 'Set pretrain_network_t' not in result.stdout
    log = _log(root, 'tiny_external')
    assert 'Resuming training from epoch: ' in log and 'iter: 2.' in log
    assert 'iter:       4,' in log and 'net_t_2.pth' not in log
    assert log.count(f'Loading MSRResNet model from {teacher_ckpt}') == 2
    models = root / 'experiments' / 'tiny_external' / 'models'
    assert sorted(p.name for p in models.iterdir()) == ['net_g_2.pth', 'net_g_4.pth', 'net_g_latest.pth']
    assert hashlib.sha256(open(teacher_ckpt, 'rb').read()).hexdigest() == teacher_hash


def test_fused_adam_follows_the_default_adam(tiny_opt, tmp_path):
    """``train.optim_g.fused: true`` (the benchmark's fused-Adam setting) passes through BasicSR to torch's Adam and
    trains as the default implementation does: the same losses and weights over 5 steps, up to rounding."""
    opt = _configure(tiny_opt, 'paper')  # the paper's output distillation, no feature term
    batch = _batch(_model(opt, tmp_path)[0])
    runs = {}
    for name, fused in (('default', {}), ('fused', {'fused': True})):
        run_opt = copy.deepcopy(opt)
        run_opt['train']['optim_g'].update(fused)
        torch.manual_seed(0)
        _, model = _model(run_opt, tmp_path)
        assert model.optimizer_g.defaults['fused'] is (True if fused else None)
        initial = model.net_g.conv_first.weight.detach().clone()
        losses = []
        for it in range(1, 6):
            model.feed_data(batch)
            model.optimize_parameters(it)
            losses.append(model.log_dict['l_total'])
        runs[name] = losses, model.net_g.state_dict()
    assert runs['fused'][0] == pytest.approx(runs['default'][0], rel=1e-5)
    after = runs['default'][1]
    assert not torch.equal(after['conv_first.weight'], initial)  # they trained
    assert all(torch.allclose(v, after[k], atol=1e-6) for k, v in runs['fused'][1].items())
