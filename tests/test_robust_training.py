"""Training holds against hostile option files and checkpoints, half-written states and NaN (issue 16).

Tiny networks and real image pairs, as in the rest of the suite; each test names the hole it closes.
"""
import copy
import os
import sys

import pytest
import torch
import yaml
from conftest import run_train, write_opt
from test_model import _model

from srdistill import compat
from srdistill.models.nan_guard import NonFiniteError
from srdistill.utils.errors import UserError

EVIL_TAG = 'x: !!python/object/apply:os.system ["touch PWNED"]\n'


def _error_line(result):
    """The one ``srdistill: error:`` line of a failed run's stderr (and that there is exactly one, no traceback)."""
    assert 'Traceback' not in result.stderr, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith('srdistill: error:')]
    assert len(lines) == 1, result.stderr[-3000:]
    return lines[0]


def _train_in_process(monkeypatch, root, *args):
    """``tools/train.py *args`` in this process (for runs that stop while reading options). Returns the exit status."""
    from srdistill.train import main
    monkeypatch.setattr(sys, 'argv', ['train.py', *map(str, args)])
    monkeypatch.chdir(root)
    with pytest.raises(SystemExit) as exit_info:
        main(str(root))
    return exit_info.value.code


# 1. an options file is data, never code

def test_options_file_with_a_python_tag_runs_nothing(tiny_opt, tmp_path):
    evil = tmp_path / 'evil.yml'
    evil.write_text(EVIL_TAG + yaml.safe_dump(tiny_opt, sort_keys=False))
    result = run_train(tmp_path, '-opt', evil)
    assert result.returncode == 2
    assert _error_line(result) == (
        f'srdistill: error: {evil}, line 1: the tag !!python/object/apply:os.system is refused: options files are '
        "read as plain data (YAML's standard tags such as !!float only, no Python objects).")
    assert sorted(p.name for p in tmp_path.iterdir()) == ['data', 'evil.yml']  # no PWNED, no experiments/


def test_options_loader_keeps_order_and_basicsr_float_tag(tmp_path):
    path = tmp_path / 'o.yml'
    path.write_text('name: x\ntrain:\n  optim_g: {lr: !!float 1e-4}\n  total_iter: 8\nlr_plain: 1e-4\n')
    opt = compat.load_options_file(str(path))
    assert list(opt) == ['name', 'train', 'lr_plain'] and list(opt['train']) == ['optim_g', 'total_iter']
    assert opt['train']['optim_g']['lr'] == 1e-4 and isinstance(opt['train']['optim_g']['lr'], float)
    assert opt['lr_plain'] == '1e-4'  # YAML 1.1, as before: a float needs a dot or !!float
    import basicsr.utils.options as basicsr_options
    assert basicsr_options.ordered_yaml()[0] is compat.OptionsLoader


@pytest.mark.parametrize('text, where, what', [
    ('name: x\ntrain:\n  lr: [1, 2\n  total_iter: 8\n', 'line 4', "expected ',' or ']', but got ':' (while parsing a "
     'flow sequence started on line 3)'),
    ('name: x\n  total_iter: 8\n', 'line 2', 'mapping values are not allowed here'),
])
def test_options_file_with_a_syntax_error_is_one_line(tiny_opt, tmp_path, monkeypatch, text, where, what):
    bad = tmp_path / 'bad.yml'
    bad.write_text(text)
    assert _train_in_process(monkeypatch, tmp_path, '-opt', bad) == 2
    with pytest.raises(UserError) as err:
        compat.load_options_file(str(bad))
    assert str(err.value) == f'{bad}, {where}: YAML syntax error: {what}.'
    assert not (tmp_path / 'experiments').exists()


def test_benchmark_options_loader_is_safe(tiny_opt, tmp_path, monkeypatch):
    from srdistill.benchmark.data_wait import load_train_options
    evil = tmp_path / 'evil.yml'
    evil.write_text(EVIL_TAG + yaml.safe_dump(tiny_opt, sort_keys=False))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match=r'evil\.yml, line 1: the tag !!python/object/apply:os\.system is refused'):
        load_train_options(str(evil), 'cpu')
    assert not (tmp_path / 'PWNED').exists()


@pytest.mark.parametrize('entry', [
    'name"];open("PWNED","w");opt["name=x',  # BasicSR exec()s opt["<keys>"]=value
    'train:total_iter=[open("PWNED","w")]',  # and eval()s a value starting with [
    'train:total_iter',  # no "=": BasicSR's ValueError traceback
])
def test_force_yml_is_not_code(tiny_opt, tmp_path, monkeypatch, capsys, entry):
    opt_path = write_opt(tmp_path / 'tiny.yml', tiny_opt)
    assert _train_in_process(monkeypatch, tmp_path, '-opt', opt_path, '--force_yml', entry) == 2
    assert f'srdistill: error: --force_yml {entry}' in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ['data', 'tiny.yml']


def test_force_yml_values_keep_basicsr_meaning():
    parse = compat._postprocess_yml_value
    assert [parse(v) for v in ('~', 'None', 'true', '!!float 2e-4', '8', '0.5', '[1, 2]', "['a', 3]", 'abc')] == [
        None, None, True, 2e-4, 8, 0.5, [1, 2], ['a', 3], 'abc']


# 6. every torch.load is weights_only=True, whatever the environment says

class Payload:
    def __reduce__(self):
        return (os.system, ('touch PWNED',))


def test_pickled_pretrain_network_runs_no_code(tiny_opt, tmp_path, monkeypatch):
    opt, model = _model(tiny_opt, tmp_path)
    evil = tmp_path / 'evil.pth'
    torch.save({'params': copy.deepcopy(model.net_g.state_dict()), 'x': Payload()}, evil)
    monkeypatch.setenv('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '1')  # run_train's process inherits it
    monkeypatch.chdir(tmp_path)
    # BasicSR's load_network (pretrain_network_g, the teacher, every resume) goes through compat.load_checkpoint
    with pytest.raises(compat.RefusedCheckpoint) as err:
        model.load_network(model.net_g, str(evil))
    assert str(err.value) == (
        f'{evil}: Weights only load failed: the file holds pickled Python objects besides tensors, here posix.system; '
        'loading them could run code, so it is refused (save the state dict alone, as BasicSR does).')
    opt = copy.deepcopy(tiny_opt)
    opt['path']['pretrain_network_g'] = str(evil)
    result = run_train(tmp_path, '-opt', write_opt(tmp_path / 'evil.yml', opt))
    assert result.returncode == 2
    line = _error_line(result)  # the option check or load_network, whichever reads it first
    assert str(evil) in line and 'Weights only load failed' in line
    assert not (tmp_path / 'PWNED').exists()


def test_basicsr_side_weight_loads_are_weights_only(tmp_path, monkeypatch):
    import basicsr.archs.vgg_arch as vgg_arch
    torch.save({'x': Payload()}, tmp_path / 'vgg.pth')
    monkeypatch.setenv('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '1')
    monkeypatch.chdir(tmp_path)
    with pytest.raises(Exception, match='Weights only load failed'):
        vgg_arch.torch.load(str(tmp_path / 'vgg.pth'), map_location='cpu')
    assert not (tmp_path / 'PWNED').exists()
    assert vgg_arch.torch.nn is torch.nn  # the rest of torch unchanged


@pytest.mark.parametrize('content, reason', [(b'', 'not a loadable PyTorch checkpoint ('),
                                             (b'PK\x03\x04 cut', 'not a loadable PyTorch checkpoint (')])
def test_broken_checkpoint_is_one_line(tmp_path, content, reason):
    path = tmp_path / 'broken.pth'
    path.write_bytes(content)
    with pytest.raises(UserError) as err:
        compat.load_checkpoint(str(path))
    assert str(err.value).startswith(f'{path}: {reason}') and '\n' not in str(err.value)


# 3. a kill while a state or checkpoint is written does not block --auto_resume

def test_checkpoint_write_cut_short_keeps_the_old_file(tiny_opt, tmp_path, monkeypatch):
    opt, model = _model(tiny_opt, tmp_path)
    os.makedirs(opt['path']['models'])
    os.makedirs(opt['path']['training_states'])
    model.save(0, 2)
    models, states = tmp_path / 'models', tmp_path / 'states'
    before = (models / 'net_g_2.pth').read_bytes(), (states / '2.state').read_bytes()
    real_save = torch.save

    def killed_while_writing(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        if isinstance(f, (str, os.PathLike)):  # BasicSR's in-place save
            with open(f, 'r+b') as out:
                out.truncate(100)
        else:
            f.truncate(100)
        raise KeyboardInterrupt  # as a kill: not an Exception, so BasicSR's retry loop does not catch it

    monkeypatch.setattr(torch, 'save', killed_while_writing)
    with pytest.raises(KeyboardInterrupt):
        model.save_network(model.net_g, 'net_g', 2)
    with pytest.raises(KeyboardInterrupt):
        model.save_training_state(0, 2)
    assert ((models / 'net_g_2.pth').read_bytes(), (states / '2.state').read_bytes()) == before
    assert sorted(os.listdir(models)) == ['net_g_2.pth'] and sorted(os.listdir(states)) == ['2.state']


def test_auto_resume_skips_states_that_do_not_load(tiny_opt, tmp_path):
    opt_path = write_opt(tmp_path / 'tiny.yml', tiny_opt)
    assert run_train(tmp_path, '-opt', opt_path).returncode == 0  # checkpoints and states at 2 and 4
    exp = tmp_path / 'experiments' / 'tiny_sd'
    states, models = exp / 'training_states', exp / 'models'
    (states / '6.state').write_bytes(b'')  # cut short by a kill (what BasicSR's in-place torch.save left)
    net_4 = (models / 'net_g_4.pth').read_bytes()
    (models / 'net_g_4.pth').write_bytes(net_4[:len(net_4) // 2])  # 4.state is fine, its network is not
    dead = 4194305  # above Linux's highest process id: a process that no longer runs
    (states / f'.8.partial{dead}.state').write_bytes(b'PK')  # what a kill during atomic_save leaves
    (models / f'.net_g_8.partial{dead}.pth').write_bytes(b'PK')

    result = run_train(tmp_path, '-opt', opt_path, '--auto_resume', '--force_yml', 'train:total_iter=6')
    assert result.returncode == 0, result.stderr[-3000:]
    warnings = [line for line in result.stderr.splitlines() if line.startswith('srdistill: warning: auto-resume')]
    assert [w.split(':')[2] for w in warnings] == [' auto-resume skips 6.state', ' auto-resume skips 4.state']
    assert f'{states / "6.state"}: not a loadable PyTorch checkpoint (' in warnings[0]
    assert f'{models / "net_g_4.pth"}: not a loadable PyTorch checkpoint (' in warnings[1]
    assert f'Auto-resume: found {states / "2.state"}' in result.stdout
    log = '\n'.join(p.read_text() for p in exp.glob('train_*.log'))
    assert 'iter: 2.' in log and 'iter:       6,' in log
    assert sorted(os.listdir(states)) == ['2.state', '4.state', '6.state']  # rewritten whole; no .partial left
    assert sorted(os.listdir(models)) == ['net_g_2.pth', 'net_g_4.pth', 'net_g_6.pth', 'net_g_latest.pth']
    assert compat.load_training_state(str(states / '6.state'), 'cpu')['iter'] == 6
    assert torch.load(models / 'net_g_4.pth', weights_only=True)['params'].keys()


def test_explicit_resume_state_that_does_not_load_is_one_line(tiny_opt, tmp_path):
    opt = copy.deepcopy(tiny_opt)
    (tmp_path / '4.state').write_bytes(b'')
    opt['path']['resume_state'] = str(tmp_path / '4.state')
    result = run_train(tmp_path, '-opt', write_opt(tmp_path / 'resume.yml', opt))
    assert result.returncode == 2
    assert _error_line(result).startswith(
        f'srdistill: error: {tmp_path / "4.state"}: not a loadable PyTorch checkpoint (')


# 4. a diverged run stops, names the iteration and the loss term, and keeps its last finite checkpoint

def test_nan_loss_stops_training_and_keeps_the_finite_checkpoint(tiny_opt, tmp_path):
    opt = copy.deepcopy(tiny_opt)
    opt['logger']['save_checkpoint_freq'] = 1
    opt['val']['val_freq'] = 100
    opt['train']['total_iter'] = 12
    result = run_train(tmp_path, '-opt', write_opt(tmp_path / 'tiny.yml', opt), '--force_yml',
                       'train:optim_g:lr=1000000.0')
    assert result.returncode == 2
    line = _error_line(result)
    models = tmp_path / 'experiments' / 'tiny_sd' / 'models'
    saved = sorted(os.listdir(models))
    assert saved == ['net_g_1.pth']  # iteration 1 trained on a finite loss: its (huge) weights are finite
    assert line == ('srdistill: error: training diverged at iteration 2: l_pix_e2 = nan, l_distill_e2 = nan, '
                    f'l_pix_e4 = nan, ...; the run stops and the last checkpoint, {models / "net_g_1.pth"}, is kept '
                    '(finite). Lower `train.optim_g.lr` (or use train.amp: bf16 instead of fp16) and resume with '
                    '--auto_resume.')
    params = torch.load(models / 'net_g_1.pth', weights_only=True)['params']
    assert all(torch.isfinite(v).all() for v in params.values())
    assert max(v.abs().max().item() for v in params.values()) > 1e5  # it did diverge


def test_non_finite_weights_are_never_saved(tiny_opt, tmp_path):
    opt, model = _model(tiny_opt, tmp_path)
    os.makedirs(opt['path']['models'])
    with torch.no_grad():
        model.net_g.conv_first.weight[0, 0, 0, 0] = float('nan')
    with pytest.raises(NonFiniteError) as err:
        model.save(0, -1)  # BasicSR's final save
    assert str(err.value) == ('iteration latest: refusing to save net_g_latest.pth: `params` holds non-finite values '
                              'in conv_first.weight; training diverged (lower `train.optim_g.lr`); the last '
                              'checkpoint saved before is kept.')
    assert os.listdir(opt['path']['models']) == []


# "Make a green test run mean more": EMA training, as options/sd_x4.yml does it

def test_ema_training_saves_the_ema_of_the_weights(tiny_opt, tmp_path):
    _, model = _model(tiny_opt, tmp_path)
    init = tmp_path / 'init.pth'
    torch.save({'params': model.net_g.state_dict()}, init)  # so the EMA's start (a copy of net_g) is known
    opt = copy.deepcopy(tiny_opt)
    opt['train'].update(ema_decay=0.999, total_iter=2)
    opt['path']['pretrain_network_g'] = str(init)
    opt['logger']['save_checkpoint_freq'] = 1
    result = run_train(tmp_path, '-opt', write_opt(tmp_path / 'ema.yml', opt))
    assert result.returncode == 0, result.stderr[-3000:]
    models = tmp_path / 'experiments' / 'tiny_sd' / 'models'
    p0 = torch.load(init, weights_only=True)['params']
    ck1, ck2 = (torch.load(models / f'net_g_{i}.pth', weights_only=True) for i in (1, 2))
    decay = 0.999
    for name in p0:
        if name not in dict(model.net_g.named_parameters()):
            continue  # BasicSR's model_ema averages parameters only
        ema1 = p0[name].clone().mul_(decay).add_(ck1['params'][name], alpha=1 - decay)
        ema2 = ema1.clone().mul_(decay).add_(ck2['params'][name], alpha=1 - decay)
        assert torch.equal(ck1['params_ema'][name], ema1) and torch.equal(ck2['params_ema'][name], ema2), name
        assert not torch.equal(ck2['params_ema'][name], ck2['params'][name]), name


# "Make a green test run mean more": a resumed run is the run it continues

def test_resumed_run_matches_the_uninterrupted_run(tiny_opt, tmp_path):
    """6 iterations straight == 3, stopped, then ``--auto_resume`` to 6: weights, EMA, optimiser, scheduler, RNG.

    4 pairs at batch 2 make 2 iterations an epoch, so the stop at 3 is mid-epoch: the resumed run must skip the batch
    of epoch 1 it trained on (BasicSR replayed the epoch from its start) and crop and flip from the random state it
    stopped with (BasicSR re-seeded it). Exact with ``num_worker_per_gpu: 0``, as here; workers re-seed themselves at
    every epoch (BasicSR's ``worker_init_fn``), so with workers a mid-epoch resume sees the same images in the same
    order, augmented differently.
    """
    opt = copy.deepcopy(tiny_opt)
    opt['train'].update(ema_decay=0.999, total_iter=6, scheduler={'type': 'MultiStepLR', 'milestones': [2, 5],
                                                                  'gamma': 0.5})
    opt['logger']['save_checkpoint_freq'] = 3
    opt['val']['val_freq'] = 100
    straight = write_opt(tmp_path / 'straight.yml', {**opt, 'name': 'straight'})
    resumed = write_opt(tmp_path / 'resumed.yml', {**opt, 'name': 'resumed'})
    assert run_train(tmp_path, '-opt', straight).returncode == 0
    assert run_train(tmp_path, '-opt', resumed, '--force_yml', 'train:total_iter=3').returncode == 0
    result = run_train(tmp_path, '-opt', resumed, '--auto_resume')
    assert result.returncode == 0, result.stderr[-3000:]
    exp = tmp_path / 'experiments'
    log = '\n'.join(p.read_text() for p in (exp / 'resumed').glob('train_*.log'))
    assert 'Resume: epoch 1 continues after its first 1 iterations.' in log

    def final(name):
        net = torch.load(exp / name / 'models' / 'net_g_6.pth', weights_only=True)
        return net, compat.load_training_state(str(exp / name / 'training_states' / '6.state'), 'cpu')

    (net_a, state_a), (net_b, state_b) = final('straight'), final('resumed')
    for key in ('params', 'params_ema'):
        assert net_a[key].keys() == net_b[key].keys()
        assert all(torch.equal(net_a[key][k], net_b[key][k]) for k in net_a[key]), key
    assert not torch.equal(net_a['params']['conv_first.weight'], net_a['params_ema']['conv_first.weight'])
    opt_a, opt_b = state_a['optimizers'][0], state_b['optimizers'][0]
    assert opt_a['param_groups'] == opt_b['param_groups'] and opt_a['param_groups'][0]['lr'] == 2e-4 * 0.25
    for i in opt_a['state']:
        assert all(torch.equal(opt_a['state'][i][k], opt_b['state'][i][k]) for k in ('step', 'exp_avg', 'exp_avg_sq'))
    # BasicSR steps the scheduler at the start of an iteration: 5 steps when iteration 6 is saved
    assert state_a['schedulers'] == state_b['schedulers'] and state_a['schedulers'][0]['last_epoch'] == 5
    assert state_a['rng'] == state_b['rng'] and state_a['epoch'] == state_b['epoch'] == 2
