"""Hostile and half-written files: non-finite weights, empty checkpoints, leftovers of a killed run, corrupt pixels."""
import json
import os
import subprocess
import sys
from os import path as osp

import pytest
import torch
from conftest import make_paired_folder

from srdistill.archs.multi_exit_srresnet_arch import MultiExitSRResNet
from srdistill.data.download import sha256sum
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


# --- weak item: a killed export, and a rerun ---------------------------------------------------------------------

_KILLED_EXPORT = '''
import os, signal, sys
from srdistill.export import exporter, formats
where, ckpt, out = sys.argv[1:]
if where == 'model':  # killed while writing a model: its temporary file stays
    write_pth = formats.write_pth
    def write_pth_and_die(path, **kwargs):
        write_pth(path, **kwargs)
        os.kill(os.getpid(), signal.SIGKILL)
    formats.write_pth = write_pth_and_die
else:  # killed between the second model and its sidecar
    write_checked, sidecars = formats.write_checked, []
    def die_before_the_second_sidecar(path, write, tolerance):
        if path.endswith('.json'):
            if sidecars:
                os.kill(os.getpid(), signal.SIGKILL)
            sidecars.append(path)
        return write_checked(path, write, tolerance)
    formats.write_checked = die_before_the_second_sidecar
exporter.export(ckpt, ('pth', ), out, exits='all')
'''


def _killed_export(where, ckpt, out):
    proc = subprocess.run([sys.executable, '-c', _KILLED_EXPORT, where, ckpt, out], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == -9, proc.stderr


def test_rerun_after_killed_exports_completes_what_is_missing(net, tmp_path):
    ckpt, out = _save(tmp_path / 'net.pth', net.state_dict()), str(tmp_path / 'o')
    _killed_export('sidecar', ckpt, out)
    assert sorted(os.listdir(out)) == ['net_e2_x4.pth', 'net_e2_x4.pth.json', 'net_e4_x4.pth']  # e4 has no sidecar
    kept = os.stat(osp.join(out, 'net_e2_x4.pth')).st_mtime_ns
    _killed_export('model', ckpt, out)  # the rerun keeps e2, redoes e4 and is killed writing it
    leftovers = [n for n in os.listdir(out) if 'partial' in n]
    assert len(leftovers) == 1 and leftovers[0].startswith('.net_e4_x4.partial')
    (tmp_path / 'o' / f'net_e4_x4.partial{dead_pid()}.pth').write_bytes(b'')  # an older run's name, not hidden
    sidecars = formats_export(ckpt, out)
    assert [s['file'] for s in sidecars] == ['net_e2_x4.pth', 'net_e4_x4.pth']
    assert sorted(os.listdir(out)) == ['net_e2_x4.pth', 'net_e2_x4.pth.json', 'net_e4_x4.pth', 'net_e4_x4.pth.json']
    assert os.stat(osp.join(out, 'net_e2_x4.pth')).st_mtime_ns == kept
    for s in sidecars:
        assert json.load(open(osp.join(out, s['file'] + '.json'))) == s
        assert s['sha256'] == sha256sum(osp.join(out, s['file']))
    with pytest.raises(UserError, match=r'net_e2_x4.pth exists \(2 of the exports do\); pass --overwrite'):
        formats_export(ckpt, out)


def formats_export(ckpt, out, **kwargs):
    from srdistill.export.exporter import export
    return export(ckpt, ('pth', ), out, exits='all', **kwargs)


def test_export_of_another_checkpoint_in_the_way_needs_overwrite(net, tmp_path):
    (tmp_path / 'a').mkdir(), (tmp_path / 'b').mkdir()
    first = _save(tmp_path / 'a' / 'net.pth', net.state_dict())
    second = _save(tmp_path / 'b' / 'net.pth', {k: v * 0.5 for k, v in net.state_dict().items()})
    out = str(tmp_path / 'o')
    from srdistill.export.exporter import export
    export(first, ('pth', ), out, exits=[2])
    with pytest.raises(UserError, match=r'net_e2_x4.pth exists, exported from another checkpoint or --param-key '
                       r'\(1 of the exports are\); pass --overwrite'):
        export(second, ('pth', ), out, exits=[2, 4])
    assert sorted(os.listdir(out)) == ['net_e2_x4.pth', 'net_e2_x4.pth.json']
    sidecars = export(second, ('pth', ), out, exits=[2, 4], overwrite=True)
    on_disk = [json.load(open(osp.join(out, f'net_e{d}_x4.pth.json'))) for d in (2, 4)]
    assert on_disk == sidecars and sidecars[0]['source_sha256'] == sha256sum(second)
