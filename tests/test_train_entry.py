"""tools/train.py keeps BasicSR's arguments (--debug, --force_yml) and never unpickles code from a checkpoint."""
import copy
import pickle

import pytest
import torch
from conftest import run_train, write_opt
from test_model import _model


def test_debug_and_force_yml(tiny_opt, tmp_path):
    opt_path = write_opt(tmp_path / 'tiny.yml', tiny_opt)
    result = run_train(tmp_path, '-opt', opt_path, '--debug', '--force_yml', 'train:total_iter=8',
                       'network_g:num_feat=4')
    assert result.returncode == 0, result.stderr[-3000:]
    exp = tmp_path / 'experiments' / 'debug_tiny_sd'
    assert sorted(p.name for p in (exp / 'models').iterdir()) == ['net_g_8.pth', 'net_g_latest.pth']
    log = next(exp.glob('train_*.log')).read_text()
    assert 'iter:       1,' in log and 'iter:       8,' in log  # debug: print every iteration
    assert 'num_feat: 4' in log and 'Validation val' in log
    assert not (tmp_path / 'tb_logger').exists()  # BasicSR writes no tensorboard log in debug mode
    assert torch.load(exp / 'models' / 'net_g_8.pth', weights_only=True)['params']['conv_first.weight'].shape[0] == 4


class Payload:
    def __reduce__(self):
        return (print, ('code ran while loading',))


def test_checkpoints_are_loaded_without_unpickling_code(tiny_opt, tmp_path):
    opt, model = _model(tiny_opt, tmp_path)
    state = {'params': copy.deepcopy(model.net_g.state_dict()), 'extra': Payload()}
    torch.save(state, tmp_path / 'evil.pth')
    with pytest.raises(pickle.UnpicklingError, match='Weights only load failed'):
        model.load_network(model.net_g, str(tmp_path / 'evil.pth'))
