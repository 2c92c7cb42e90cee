"""Hostile and half-written files: non-finite weights, empty checkpoints, leftovers of a killed run, corrupt pixels."""
import os
import subprocess
import sys

import pytest
import torch
from conftest import make_paired_folder

from srdistill.archs.multi_exit_srresnet_arch import MultiExitSRResNet
from srdistill.evaluation.checkpoints import check_finite, load_checkpoint, read_state_dicts
from srdistill.export import formats
from srdistill.export.export_cli import main as export_main
from srdistill.utils.errors import UserError, first_line


@pytest.fixture
def net():
    torch.manual_seed(0)
    return MultiExitSRResNet(num_feat=8, num_block=4, exits=[2], upscale=4).eval()


def _save(path, state, ema=None):
    torch.save({'params': state, **({'params_ema': ema} if ema is not None else {})}, path)
    return str(path)


def dead_pid():
    """The id of a process that has ended (for leftovers of a killed run)."""
    proc = subprocess.Popen([sys.executable, '-c', ''])
    proc.wait()
    return proc.pid


# --- item 5: an exception without a message ---------------------------------------------------------------------

def test_first_line_of_an_empty_message_is_the_exception_class():
    assert first_line(EOFError()) == 'EOFError'
    assert first_line(ValueError('\n')) == 'ValueError'
    assert first_line(RuntimeError('first\nsecond'), limit=3) == 'fir'


def test_zero_byte_checkpoint_is_one_line(tmp_path, capsys):
    (tmp_path / 'empty.pth').write_bytes(b'')
    with pytest.raises(UserError, match=r'empty.pth is not a loadable PyTorch checkpoint \(EOFError\)'):
        read_state_dicts(str(tmp_path / 'empty.pth'))
    assert export_main(['--ckpt', str(tmp_path / 'empty.pth'), '--out', str(tmp_path / 'o')]) == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and 'empty.pth is not a loadable PyTorch checkpoint (EOFError)' in err


# --- item 4: non-finite weights are refused ---------------------------------------------------------------------

def test_check_finite_names_the_first_non_finite_tensor(net):
    state = net.state_dict()
    check_finite(state, 'ok.pth')  # finite: no error
    state['body.1.conv2.weight'][0, 0, 0, 0] = float('inf')
    state['conv_last.weight'][0, 0, 0, 0] = float('nan')
    with pytest.raises(UserError, match=r'bad.pth holds non-finite weights: body\.1\.conv2\.weight has 1 inf/nan '
                       r'value.*train again from the last finite checkpoint'):
        check_finite(state, 'bad.pth')


@pytest.mark.parametrize('key', ['params', 'params_ema'])
def test_nan_checkpoint_refused_by_evaluate_export_and_infer(net, tmp_path, capsys, key):
    nan = {k: v.clone() for k, v in net.state_dict().items()}
    nan['conv_first.weight'][:] = float('nan')
    finite = net.state_dict()
    path = _save(tmp_path / 'nan.pth', *((nan, finite) if key == 'params' else (finite, nan)))
    expected = f'nan.pth holds non-finite weights: {key}.conv_first.weight has 216 inf/nan values'
    with pytest.raises(UserError, match=expected):
        load_checkpoint(path)
    from srdistill.evaluation.evaluate_cli import main as evaluate_main
    from srdistill.inference.infer_cli import main as infer_main
    gt, lq = make_paired_folder(str(tmp_path / 'data'), n=1, size=32)
    runs = [export_main(['--ckpt', path, '--out', str(tmp_path / 'o')]),
            evaluate_main(['--ckpt', path, '--out', str(tmp_path / 'e'), '--no-latency', '-opt',
                           _test_opt(tmp_path, gt, lq)]),
            infer_main(['--model', path, '--input', lq, '--output', str(tmp_path / 'i')])]
    assert runs == [2, 2, 2]
    assert capsys.readouterr().err.count(expected) == 3
    assert not any((tmp_path / d).exists() and os.listdir(tmp_path / d) for d in ('o', 'e', 'i'))


def _test_opt(tmp_path, gt, lq):
    import yaml
    path = tmp_path / 'test.yml'
    path.write_text(yaml.safe_dump({'datasets': {'test_1': {'name': 'one', 'dataroot_gt': gt, 'dataroot_lq': lq}}}))
    return str(path)


@pytest.mark.parametrize('diff', [float('nan'), float('inf')])
def test_write_checked_fails_a_non_finite_difference(tmp_path, diff):
    target = tmp_path / 'm.onnx'

    def write(tmp):
        open(tmp, 'wb').close()
        return diff

    with pytest.raises(UserError, match=r'm.onnx gives non-finite output \((nan|inf)\) on the check image'):
        formats.write_checked(str(target), write, float('inf'))
    assert os.listdir(tmp_path) == []
