"""The BasicSR 1.4.2 fixes in srdistill.compat, each shown on a real (tiny) training run on CPU."""
import copy
import subprocess
import sys

import pytest
import torch
from conftest import run_train, write_opt

from srdistill.compat import cpu_prefetch_fallback, load_training_state


def test_import_basicsr_works_on_current_torchvision():
    # basicsr.data.degradations imports the module torchvision 0.17 removed
    result = subprocess.run([sys.executable, '-c', 'import srdistill, basicsr.data.degradations as d; '
                             'print(d.rgb_to_grayscale.__module__)'], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert 'functional_tensor' in result.stdout


@pytest.fixture
def trained(tiny_opt, tmp_path):
    """A 4-iteration run (checkpoints at 2 and 4) under a project root ``tmp_path/proj``."""
    root = tmp_path / 'proj'
    root.mkdir()
    opt_path = write_opt(tmp_path / 'tiny.yml', tiny_opt)
    result = run_train(root, '-opt', opt_path)
    assert result.returncode == 0, result.stderr[-3000:]
    return root, opt_path, tiny_opt


def _log(root, name='tiny_sd'):
    return '\n'.join(p.read_text() for p in sorted((root / 'experiments' / name).glob('train_*.log')))


def test_resume_on_cpu_from_a_training_state(trained, tmp_path):
    root, _, opt = trained
    states = root / 'experiments' / 'tiny_sd' / 'training_states'
    assert sorted(p.name for p in states.iterdir()) == ['2.state', '4.state']
    state = load_training_state(str(states / '4.state'), 'cpu')  # weights_only, no CUDA needed
    assert state['iter'] == 4 and state['optimizers'][0]['state'][0]['exp_avg'].device == torch.device('cpu')

    opt = copy.deepcopy(opt)
    opt['path']['resume_state'] = str(states / '4.state')
    opt['train']['total_iter'] = 6
    result = run_train(root, '-opt', write_opt(tmp_path / 'resume.yml', opt))
    assert result.returncode == 0, result.stderr[-3000:]
    log = _log(root)
    assert 'Resuming training from epoch: ' in log and 'iter: 4.' in log
    assert 'iter:       6,' in log and (states / '6.state').exists()


def test_auto_resume_started_from_another_directory(trained, tmp_path):
    root, opt_path, _ = trained
    elsewhere = tmp_path / 'elsewhere'
    elsewhere.mkdir()
    result = run_train(root, '-opt', opt_path, '--auto_resume', '--force_yml', 'train:total_iter=6', cwd=elsewhere)
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'Auto-resume: found' in result.stdout
    assert 'iter: 4.' in _log(root)
    # the experiment was continued, not archived and restarted
    assert [p.name for p in (root / 'experiments').iterdir()] == ['tiny_sd']
    assert not list(elsewhere.iterdir())


def test_test_options_without_val_suffix(trained, tmp_path):
    root, _, opt = trained
    test_opt = {
        'name': 'tiny_test', 'model_type': 'SRModel', 'scale': 4, 'num_gpu': 0,
        'datasets': {'test_1': {k: opt['datasets']['val'][k] for k in ('name', 'type', 'dataroot_gt', 'dataroot_lq',
                                                                       'io_backend')}},
        'network_g': opt['network_g'],
        'path': {'pretrain_network_g': str(root / 'experiments' / 'tiny_sd' / 'models' / 'net_g_4.pth'),
                 'strict_load_g': True},
        'val': {'save_img': True, 'metrics': opt['val']['metrics']},  # no `suffix`: KeyError in BasicSR 1.4.2
    }
    code = (f'import sys; sys.argv = ["test.py", "-opt", {write_opt(tmp_path / "test.yml", test_opt)!r}]; '
            f'import srdistill; from basicsr.test import test_pipeline; test_pipeline({str(root)!r})')
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    saved = sorted(p.name for p in (root / 'results' / 'tiny_test' / 'visualization' / 'val').iterdir())
    assert saved == ['img00_tiny_test.png', 'img01_tiny_test.png']


def test_cuda_prefetch_options_train_on_cpu(tiny_opt, tmp_path):
    """prefetch_mode: cuda + pin_memory: true (the GPU options' setting) trains on a machine without CUDA: BasicSR's
    CUDAPrefetcher would fail on torch.cuda.Stream(), so both fall back, with one note."""
    tiny_opt['datasets']['train'].update(prefetch_mode='cuda', pin_memory=True)
    opt_path = write_opt(tmp_path / 'tiny.yml', tiny_opt)
    result = run_train(tmp_path, '-opt', opt_path, '--force_yml', 'num_gpu=0')
    assert result.returncode == 0, result.stderr[-3000:]
    assert ('srdistill: note: no CUDA device, so datasets.train prefetch_mode: cuda and pin_memory: true fall back '
            'to prefetch_mode: cpu and pin_memory: false.') in result.stderr
    assert "'pin_memory' argument" not in result.stderr  # the data loader's warning about pinning without CUDA
    assert 'Use cuda prefetch dataloader' not in _log(tmp_path)
    assert (tmp_path / 'experiments' / 'tiny_sd' / 'models' / 'net_g_latest.pth').is_file()


def test_cpu_prefetch_fallback_changes_only_cpu_runs():
    def opt(num_gpu, **train):
        return {'num_gpu': num_gpu, 'datasets': {'train': dict(train)}}

    gpu = opt(1, prefetch_mode='cuda', pin_memory=True)
    assert cpu_prefetch_fallback(gpu) is None and gpu == opt(1, prefetch_mode='cuda', pin_memory=True)
    plain = opt(0, prefetch_mode=None)
    assert cpu_prefetch_fallback(plain) is None and plain == opt(0, prefetch_mode=None)
    pinned = opt(0, prefetch_mode=None, pin_memory=True)
    assert cpu_prefetch_fallback(pinned) == 'no CUDA device, so datasets.train pin_memory: true falls back to ' \
        'pin_memory: false.'
    assert pinned == opt(0, prefetch_mode=None, pin_memory=False)
