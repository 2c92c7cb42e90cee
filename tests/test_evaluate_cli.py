"""tools/evaluate.py end to end: table, CSV/JSON, plot and picture from real checkpoints; the bicubic row; bad input."""
import json
import urllib.error
from os import path as osp

import pytest
import torch
from basicsr.archs.srresnet_arch import MSRResNet
from conftest import SHARED_DATASETS, make_paired_folder, require_shared, write_opt

from srdistill.archs.multi_exit_srresnet_arch import MultiExitSRResNet
from srdistill.data.prepare import prepare_paired_folder
from srdistill.evaluation.evaluate_cli import main


@pytest.fixture
def setup(tmp_path):
    """Two prepared 'benchmark' sets of real photo crops and two checkpoints (multi-exit, plain MSRResNet)."""
    root = tmp_path / 'datasets'
    for name, seed in (('SetA', 0), ('SetB', 3)):
        gt, _ = make_paired_folder(str(tmp_path / 'raw' / name), n=2, size=64, seed=seed)
        prepare_paired_folder([gt], str(root / name), scales=(4, ), mod_crop_hr=False, keep_channels=True, workers=1,
                              show_progress=False)
    torch.manual_seed(0)
    sd = MultiExitSRResNet(num_feat=8, num_block=4, exits=[2])
    (tmp_path / 'exp' / 'models').mkdir(parents=True)
    torch.save({'params': sd.state_dict()}, tmp_path / 'exp' / 'models' / 'net_g_10.pth')
    torch.save(MSRResNet(num_feat=8, num_block=2).state_dict(), tmp_path / 'srresnet2.pth')
    return tmp_path, root


def _args(tmp_path, root, *extra):
    return ['--ckpt', str(tmp_path / 'exp' / 'models' / 'net_g_10.pth'), str(tmp_path / 'srresnet2.pth'),
            '--datasets', 'SetA', 'SetB', '--data-root', str(root), '--out', str(tmp_path / 'out'),
            '--mac-size', '32', '32', '--latency-repeats', '1', '--device', 'cpu', *extra]


GOLDEN_PSNR = {
    ('bicubic', 'bicubic_srcnn'): [29.4984, 28.9044], ('bicubic', 'bicubic'): [29.4934, 28.8912],
    ('exp', 'e2'): [28.3784, 27.8764], ('exp', 'e4'): [28.3787, 27.8771], ('srresnet2', 'e2'): [28.3788, 27.8736],
}


def test_one_command_gives_table_files_plot_and_picture(setup, capsys):
    tmp_path, root = setup
    extra = ('--rgb', '--save-images', '--self-ensemble', '--tile', '12', '--tile-overlap', '4')
    assert main(_args(tmp_path, root, *extra)) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith('| ')]
    assert lines[0].startswith('| model | output | params (K) | GMACs | latency (ms) | SetA PSNR / SSIM | SetB')
    assert [tuple(cell.strip() for cell in line.split('|')[1:3]) for line in lines[1:]] == [
        ('bicubic', 'bicubic_srcnn'), ('bicubic', 'bicubic'), ('exp', 'e2'), ('exp', 'e4'), ('srresnet2', 'e2')]
    assert 'Outputs x8 self-ensembled.' in out
    result = json.load(open(tmp_path / 'out' / 'results.json'))
    rows = {(r['model'], r['output']): r for r in result['rows']}
    # the plain SRResNet-2 and the 2-block exit have the same architecture: same params and MACs
    assert rows[('exp', 'e2')]['params'] == rows[('srresnet2', 'e2')]['params'] == sum(
        p.numel() for p in MSRResNet(num_feat=8, num_block=2).parameters())
    assert rows[('exp', 'e2')]['macs'] == rows[('srresnet2', 'e2')]['macs'] < rows[('exp', 'e4')]['macs']
    # golden Y PSNR (dB) on SetA / SetB. bicubic: float64 NumPy, the same on every CPU (1e-3 covers the 4 decimals);
    # the untrained seeded nets (x8 self-ensemble, 12-px tiles): float32 forward passes, whose last bits can differ on
    # another CPU and flip a rounded pixel (~1e-3 dB each), hence 0.01 dB
    for key, psnr in GOLDEN_PSNR.items():
        tolerance = 1e-3 if key[0] == 'bicubic' else 0.01
        assert [rows[key][f'{d}/psnr'] for d in ('SetA', 'SetB')] == pytest.approx(psnr, abs=tolerance), key
    assert all('SetA/psnr_rgb' in rows[k] for k in rows if k[1] != 'bicubic_srcnn')  # a Y-only baseline has no RGB
    assert [name for name, _ in result['per_image']['exp']['SetB']] == ['img00', 'img01']
    assert (tmp_path / 'out' / 'table.csv').read_text().splitlines()[1].startswith('model,output,depth,params,macs')
    for png in ('tradeoff.png', 'comparison.png', 'images/exp/SetA/e4/img01.png'):
        assert (tmp_path / 'out' / png).read_bytes()[:4] == b'\x89PNG'
    # results are never overwritten unasked
    assert main(_args(tmp_path, root)) == 2
    assert 'already holds results; choose another --out or pass --overwrite' in capsys.readouterr().err


def test_exits_subset_and_lpips_without_its_weights(setup, capsys, monkeypatch):
    tmp_path, root = setup

    def offline(*args, **kwargs):
        raise urllib.error.URLError('no network')

    monkeypatch.setattr(torch.hub, 'load_state_dict_from_url', offline)
    assert main(_args(tmp_path, root, '--exits', '2', '--lpips', '--no-latency', '--out', str(tmp_path / 'o2'))) == 0
    captured = capsys.readouterr()
    assert 'LPIPS skipped: it needs torchvision\'s AlexNet weights' in captured.err
    assert 'Place alexnet-owt-7be5be79.pth (from https://download.pytorch.org/models/alexnet-owt-7be5be79.pth) in ' \
           in captured.err
    rows = json.load(open(tmp_path / 'o2' / 'results.json'))['rows']
    assert [(r['model'], r['output']) for r in rows] == [('bicubic', 'bicubic_srcnn'), ('bicubic', 'bicubic'),
                                                         ('exp', 'e2'), ('srresnet2', 'e2')]
    assert all(r['latency_ms'] is None and 'SetA/lpips' not in r and 'SetA/psnr' in r for r in rows)


def test_each_distinct_network_timed_once_interleaved(setup, monkeypatch):
    """The same checkpoint twice: its exits are timed once each (one timing shared by both rows), all distinct
    networks in one interleaved run; rows carry the median and quartiles, the table shows both."""
    from srdistill.evaluation import evaluate_cli
    tmp_path, root = setup
    calls = []
    real = evaluate_cli.runtime_latencies

    def spy(networks, lr_size, **kwargs):
        calls.append((len(networks), lr_size, kwargs))
        return real(networks, lr_size, **kwargs)

    monkeypatch.setattr(evaluate_cli, 'runtime_latencies', spy)
    ckpt = str(tmp_path / 'exp' / 'models' / 'net_g_10.pth')
    assert main(['--ckpt', ckpt, ckpt, str(tmp_path / 'srresnet2.pth'), '--labels', 'A', 'B', 'C', '--datasets',
                 'SetA', '--data-root', str(root), '--out', str(tmp_path / 'o'), '--mac-size', '32', '32',
                 '--latency-repeats', '3', '--device', 'cpu', '--picture-images', '1']) == 0
    # A and B: e2 and e4 of one checkpoint, 2 networks; C: SRResNet-2 of other weights, a third
    assert calls == [(3, (8, 8), dict(runtimes=('eager', ), warmup=2, repeats=3, device='cpu'))]
    rows = {(r['model'], r['output']): r for r in json.load(open(tmp_path / 'o' / 'results.json'))['rows']}
    keys = ('latency_ms', 'latency_q1_ms', 'latency_q3_ms')
    for output in ('e2', 'e4'):
        assert [rows[('A', output)][k] for k in keys] == [rows[('B', output)][k] for k in keys]
    table = (tmp_path / 'o' / 'table.md').read_text()
    for key in (('A', 'e2'), ('A', 'e4'), ('C', 'e2')):
        row = rows[key]
        assert 0 < row['latency_q1_ms'] <= row['latency_ms'] <= row['latency_q3_ms']
        assert f"| {row['latency_ms']:.1f} ({row['latency_q1_ms']:.1f}-{row['latency_q3_ms']:.1f}) |" in table
    assert 'each distinct network (same options and weights) timed once' in table
    assert (tmp_path / 'o' / 'table.csv').read_text().splitlines()[1].startswith(
        'model,output,depth,params,macs,latency_ms,latency_q1_ms,latency_q3_ms,')


@pytest.mark.parametrize('change, message', [
    (['--exits', '3'], r'--exits [3]: no such output; the checkpoint(s) have [2, 4]'),
    (['--datasets', 'Urban100'], 'dataset Urban100 (x4) is not prepared'),
    (['--scale', '2'], 'is a x4 model, but scale 2 was asked for'),
    (['--tile', '8'], '--tile 8 is too small for exact tiles of this network'),
    (['--tile', '8', '--tile-overlap', '8'], '--tile 8 must be larger than --tile-overlap 8'),
])
def test_bad_input_messages(setup, capsys, change, message):
    tmp_path, root = setup
    args = _args(tmp_path, root)
    flag = change[0]
    if flag in args:
        i = args.index(flag)
        args = args[:i] + args[i + 1 + (2 if flag == '--datasets' else 1):]
    assert main(args + change) == 2
    assert message in capsys.readouterr().err


def test_not_a_model_checkpoint(setup, capsys):
    tmp_path, root = setup
    torch.save({'params': torch.nn.Linear(3, 3).state_dict()}, tmp_path / 'linear.pth')
    assert main(['--ckpt', str(tmp_path / 'linear.pth'), '--datasets', 'SetA', '--data-root', str(root)]) == 2
    assert 'linear.pth is not a checkpoint of a network srdistill knows' in capsys.readouterr().err


@pytest.mark.parametrize('name, scale, lr_files, quoted', [
    ('Set5', 4, '28.42 / 0.8101', '28.42 / 0.8104'),
    ('Set14', 2, '30.22 / 0.8683', '30.23 / 0.8687'),
])
def test_bicubic_rows_reproduce_the_published_tables(tmp_path, capsys, name, scale, lr_files, quoted):
    """bicubic: SelfExSR's table (the published LR files); bicubic_srcnn: the numbers quoted since SRCNN/VDSR (within
    0.01 dB / 0.001: Set5 x4 28.42 / 0.8104, Set14 x2 30.24 / 0.8688)."""
    hr = osp.join(SHARED_DATASETS, name, 'HR')
    require_shared(hr)
    prepare_paired_folder([hr], str(tmp_path / 'ds' / name), scales=(scale, ), mod_crop_hr=False, keep_channels=True,
                          workers=1, show_progress=False)
    torch.save({'params': MultiExitSRResNet(num_feat=4, num_block=1, upscale=scale).state_dict()}, tmp_path / 't.pth')
    assert main(['--ckpt', str(tmp_path / 't.pth'), '--datasets', name, '--data-root', str(tmp_path / 'ds'),
                 '--out', str(tmp_path / 'out'), '--no-latency', '--device', 'cpu', '--picture-images', '1']) == 0
    out = capsys.readouterr().out
    assert f'| bicubic | bicubic | - | - | - | {lr_files} |' in out
    assert f'| bicubic | bicubic_srcnn | - | - | - | {quoted} |' in out


def test_basicsr_style_test_options_file(setup, capsys):
    tmp_path, root = setup
    opt = {'name': 't', 'scale': 4, 'datasets': {'test_1': {
        'name': 'SetA', 'type': 'PairedImageDataset', 'dataroot_gt': str(root / 'SetA' / 'HR'),
        'dataroot_lq': str(root / 'SetA' / 'LR_bicubic' / 'X4'), 'io_backend': {'type': 'disk'}}},
        'network_g': {'type': 'MultiExitSRResNet', 'num_feat': 8, 'num_block': 4, 'exits': [2], 'upscale': 4},
        'path': {'pretrain_network_g': str(tmp_path / 'exp' / 'models' / 'net_g_10.pth')}}
    opt_path = write_opt(tmp_path / 'test.yml', opt)
    assert main(['-opt', opt_path, '--out', str(tmp_path / 'o'), '--no-latency', '--device', 'cpu']) == 0
    rows = json.load(open(tmp_path / 'o' / 'results.json'))['rows']
    assert [r['output'] for r in rows] == ['bicubic_srcnn', 'bicubic', 'e2', 'e4'] and 'SetA/psnr' in rows[-1]
    opt['network_g']['num_block'] = 6  # the options describe another network than the checkpoint holds
    assert main(['-opt', write_opt(tmp_path / 'bad.yml', opt), '--out', str(tmp_path / 'o2')]) == 2
    assert 'network_g.num_block is 6 there, 4 in the checkpoint' in capsys.readouterr().err
