"""tools/benchmark.py runs on a tiny configuration and writes a complete report (it is a tool, not a timed test)."""
import json
import math
import sys

import pytest
import torch
from conftest import make_paired_folder, write_opt

from srdistill.archs.multi_exit_srresnet_arch import MultiExitSRResNet
from srdistill.benchmark.cli import main
from srdistill.benchmark.data_wait import measure_data_wait
from srdistill.benchmark.measure import matmul_gflops
from srdistill.benchmark.precision import TOLERANCE_DB
from srdistill.benchmark.report import _data_wait_lines, _hardware_lines, markdown, write_report
from srdistill.benchmark.run import run_benchmark
from srdistill.data.npy_pack import pack_npy
from srdistill.data.prepare import prepare_paired_folder
from srdistill.utils.errors import UserError


@pytest.fixture
def tiny_ckpt_and_set(tmp_path):
    """A tiny multi-exit checkpoint and a prepared benchmark folder (``HR/``, ``LR_bicubic/X4/``) of real photos."""
    torch.manual_seed(0)
    ckpt = tmp_path / 'net_g_tiny.pth'
    torch.save({'params': MultiExitSRResNet(num_feat=4, num_block=3, exits=[1]).state_dict()}, ckpt)
    gt, _ = make_paired_folder(str(tmp_path / 'raw'), n=2, size=48, seed=2)
    prepare_paired_folder([gt], str(tmp_path / 'SetT'), scales=(4, ), mod_crop_hr=False, keep_channels=True,
                          workers=1, show_progress=False)
    return str(ckpt), str(tmp_path / 'SetT')


def test_benchmark_runs_on_a_tiny_config(tmp_path, tiny_opt, tiny_ckpt_and_set):
    tiny_opt['datasets']['train']['num_worker_per_gpu'] = 1  # the options file's; overridden to 0 below
    opt_path = write_opt(tmp_path / 'tiny.yml', tiny_opt)
    train = tiny_opt['datasets']['train']  # the same set packed into .npy arrays: a second row of the data section
    train.update(type='PairedNpyDataset', dataroot_gt=pack_npy(train['dataroot_gt'], show_progress=False),
                 dataroot_lq=pack_npy(train['dataroot_lq'], show_progress=False), prefetch_mode='cuda', pin_memory=True)
    npy_path = write_opt(tmp_path / 'tiny_npy.yml', tiny_opt)
    ckpt, val_dir = tiny_ckpt_and_set
    report = run_benchmark(num_feat=4, num_block=3, exit_depth=1, batch=2, gt_size=16, lr_size=(8, 8), device='cpu',
                           warmup=1, repeats=1, compile_=False, data_opt=[opt_path, npy_path], data_iters=4,
                           num_worker=0,
                           data_channels_last=True, ckpt=ckpt, val_dir=val_dir,
                           runtimes=('eager', 'channels_last'))  # each runtime for real: tests/test_runtimes.py

    # training: the three models, then the self-distillation model's fast settings (CPU: no AMP)
    assert [r['model'] for r in report['training']] == [
        'self-distillation (exit 1)', 'same trunk, no exit', 'BasicSR SRModel + MSRResNet',
        'self-distillation (exit 1), channels_last', 'self-distillation (exit 1), channels_last + fused Adam']
    assert all(r['step_s'] > 0 and r['samples_per_s'] > 0 for r in report['training'])
    sd, plain, basic, sd_cl, sd_fused = report['training']
    assert sd_fused['fused_adam'] and not sd_cl['fused_adam'] and sd_fused['channels_last']
    assert sd_fused['aten_ops'] < sd_cl['aten_ops'] - 20  # one fused kernel instead of several ops per parameter
    assert sd['forward_gmacs'] > plain['forward_gmacs'] == basic['forward_gmacs']
    # the same network and loss: our plain step dispatches as many operators as BasicSR's, give or take the loss
    # weight and the logged total; the exit adds its tail's forward and backward and a second loss
    assert abs(plain['aten_ops'] - basic['aten_ops']) <= 5 and sd['aten_ops'] > plain['aten_ops'] + 50
    assert 'cuda_kernels' not in plain
    assert sd_cl['forward_gmacs'] == sd['forward_gmacs'] and sd_cl['channels_last'] and sd_cl['amp'] == 'fp32'
    assert sd['speedup_vs_sd_fp32'] == 1 and plain['speedup_vs_sd_fp32'] is None
    assert sd_cl['speedup_vs_sd_fp32'] == pytest.approx(sd['step_s'] / sd_cl['step_s'])
    assert [r['output'] for r in report['inference']] == ['e1', 'e3']
    assert set(report['inference'][0]['ms']) == {'eager', 'channels_last', 'onnxruntime'}
    assert report['matmul_gflops'] > 0 and report['environment']['torch']
    # the per-runtime table: the exit and the final network, each runtime asked for, timed (repeats=1)
    rt = report['runtimes']
    assert (rt['exit'], rt['final'], rt['runtimes']) == ('e1', 'e3', ['eager', 'channels_last'])
    assert rt['gmacs'] == pytest.approx({r['output']: r['gmacs'] for r in report['inference']})
    assert all(rt['latency'][out][r]['n'] == 1 for out in ('e1', 'e3') for r in rt['runtimes'])

    # data wait: real iterations of the options file, with the overrides applied to the built model
    data, data_npy = report['data_wait']
    assert (data['dataset_type'], data_npy['dataset_type']) == ('PairedImageDataset', 'PairedNpyDataset')
    assert data_npy['samples'] == 4 and data_npy['sample_ms'] > 0 and data_npy['options'] == npy_path
    # its prefetch_mode: cuda + pin_memory fall back on the CPU, as in training
    assert (data_npy['prefetch_mode'], data_npy['pin_memory']) == ('cpu', False)
    assert (data['batch'], data['num_worker_per_gpu'], data['prefetch_mode']) == (2, 0, 'none')
    assert data['channels_last'] is True and data['amp'] == 'fp32' and data['samples'] == 4
    assert data['data_wait_s'] > 0 and data['step_s'] > 0 and data['max_data_wait_s'] >= data['data_wait_s']
    assert 0 < data['data_fraction'] < 1
    # 4 pairs at batch 2: 2 iterations an epoch; 5 synchronised iterations, 1 batch kept on the device, then 5 rounds
    # of 4 free-running ones with the data (those without it load nothing): 26 batches, 12 restarts
    assert data['epoch_restarts'] == 12
    # the free-running loop with and without the data, and the share of its time the data costs
    assert data['free_samples_per_s'] > 0 and data['model_samples_per_s'] > 0
    assert data['data_cost'] == pytest.approx(1 - data['free_samples_per_s'] / data['model_samples_per_s'])
    # the loader's own capacity, without the model
    assert data['sample_ms'] > 0 and data['loader_samples_per_s'] > 0

    # precision: every output of the checkpoint in fp32 and channels_last on the folder, within tolerance
    prec = report['precision']
    assert prec['images'] == 2 and prec['scale'] == 4
    assert [(r['output'], r['variant']) for r in prec['rows']] == [
        ('e1', 'fp32'), ('e1', 'channels_last'), ('e3', 'fp32'), ('e3', 'channels_last')]
    assert all(math.isfinite(r['psnr']) and 0 < r['ssim'] <= 1 for r in prec['rows'])
    for row in prec['rows'][1::2]:
        assert abs(row['delta_db']) <= TOLERANCE_DB['channels_last'] == row['tolerance_db'] and row['passed']
    assert prec['passed'] and prec['rows'][0]['passed'] is None

    md, js = write_report(report, str(tmp_path / 'bench.md'))
    text = open(md).read()
    assert text == markdown(report)
    assert f"dispatching {plain['aten_ops']} against {basic['aten_ops']} ATen operators per step" in text
    assert "our plain path vs BasicSR's own" in text and 'fewer multiply-adds' in text and 'GFLOP/s' in text
    assert '| self-distillation (exit 1), channels_last | fp32 | yes |' in text
    assert 'channels_last + fused Adam ' in text
    assert 'applies on CUDA only' in text
    assert '## Data loading in real training iterations' in text and f'`{opt_path}`' in text
    assert f'| `{opt_path}` | PairedImageDataset `train` (4 pairs, disk) | 0 | none | no | ' in text
    assert f'| `{npy_path}` | PairedNpyDataset `train` (4 pairs, disk) | 0 | cpu | no | ' in text
    free = f"| {data['free_samples_per_s']:.1f} | {data['model_samples_per_s']:.1f} | {100 * data['data_cost']:.1f}% |"
    assert free in text
    assert f"{100 * data['data_fraction']:.1f}%" in text and 'CPU cores of loading at' in text
    assert '## Precision of the fast settings on trained weights' in text and 'channels_last 0.01 dB' in text
    assert '| e3 | channels_last |' in text and 'every fast setting is within its tolerance' in text
    assert '## Latency per runtime (ms)' in text and '| channels_last | ' in text
    assert '- goal: the fastest runtime' in text
    saved = json.load(open(js))
    assert saved['settings']['num_block'] == 3 and saved['data_wait'][0]['iters'] == 4
    assert saved['precision']['rows'][1]['variant'] == 'channels_last'


def _runtime_report(latency, runtimes_=('eager', 'openvino', 'ncnn')):
    report = dict(environment=dict(cpu='c', cpu_count=2, torch_threads=2, torch='t', basicsr='b', onnxruntime='o',
                                   srdistill='s', platform='p', device='cpu'),
                  settings=dict(num_feat=4, num_block=32, exit=8, scale=4, batch=2, gt_size=16, lr_size=[180, 320],
                                warmup=2, repeats=5),
                  training=[], matmul_gflops=10.0,
                  inference=[dict(output=o, gmacs=g, ms={'eager': 1.0}, achieved_gflops=1.0)
                             for o, g in (('e8', 10.0), ('e32', 20.0))],
                  runtimes=dict(exit='e8', final='e32', runtimes=list(runtimes_), versions={'openvino': '1'},
                                gmacs={'e8': 10.0, 'e32': 20.0}, latency=latency))
    return markdown(report)


def _ms(median, q1=None, q3=None, threads='t'):
    return dict(median_ms=median, q1_ms=q1 or median, q3_ms=q3 or median, min_ms=median, max_ms=median, n=5,
                threads=threads)


def test_runtime_section_speedups_and_goals():
    """Speed-ups over eager, the exit's speed-up over the final network against the MAC ratio (2x here), a skipped
    runtime's reason, and whether each goal is met in the fastest runtime."""
    skipped = {'skipped': 'the ncnn latency needs the pnnx package, which is not installed: pip install pnnx'}
    text = _runtime_report({'e8': {'eager': _ms(100.0, 90.0, 110.0), 'openvino': _ms(40.0, threads='OpenVINO CPU'),
                                   'ncnn': skipped},
                            'e32': {'eager': _ms(200.0), 'openvino': _ms(76.0), 'ncnn': skipped}})
    assert 'Training not measured (`--skip-training`).' in text and '## Training throughput' not in text
    assert 'e32 has 2.00x the multiply-adds of e8 (20.00 vs 10.00 GMACs)' in text and 'openvino 1' in text
    assert '| eager | 100.0 | 90.0-110.0 | 1.00x | 200.0 | 200.0-200.0 | 1.00x | 2.00x | 1.00 | t |' in text
    # openvino: 100/40 = 2.5x eager for the exit, 200/76 for the final; 76/40 = 1.9x faster, 0.95 of the MAC ratio
    assert '| openvino | 40.0 | 40.0-40.0 | 2.50x | 76.0 | 76.0-76.0 | 2.63x | 1.90x | 0.95 | OpenVINO CPU |' in text
    assert '| ncnn | skipped: the ncnn latency needs the pnnx package' in text and 'pip install pnnx' in text
    assert ('- goal: the fastest runtime at least 2x PyTorch eager for e8: **met** (fastest: openvino, 2.50x).'
            in text)
    assert ('in the fastest runtime: **met** (openvino: 1.90x, 0.95 of the ratio; runtimes that meet it: eager, '
            'openvino).') in text
    slow = _runtime_report({'e8': {'eager': _ms(100.0), 'openvino': _ms(60.0)},
                            'e32': {'eager': _ms(150.0), 'openvino': _ms(90.0)}}, ('eager', 'openvino'))
    assert '**not met** (fastest: openvino, 1.67x)' in slow
    assert '**not met** (openvino: 1.50x, 0.75 of the ratio; runtimes that meet it: none)' in slow
    no_eager = _runtime_report({'e8': {'openvino': _ms(60.0)}, 'e32': {'openvino': _ms(90.0)}}, ('openvino', ))
    assert 'not measured (no eager row)' in no_eager


def test_cli_inference_only(tmp_path, capsys, monkeypatch):
    """--skip-training: no training rows, the per-exit and per-runtime latency; a runtime whose package is missing is
    listed as skipped with its pip package."""
    monkeypatch.setitem(sys.modules, 'openvino', None)  # import openvino raises ImportError
    assert main(['--num-feat', '4', '--num-block', '3', '--exit', '1', '--lr-size', '8', '8', '--warmup', '0',
                 '--repeats', '2', '--no-compile', '--device', 'cpu', '--skip-training', '--runtimes', 'eager',
                 'channels_last', 'openvino', '--out', str(tmp_path / 'b.md')]) == 0
    report = json.load(open(tmp_path / 'b.json'))
    assert report['training'] == [] and report['settings']['skip_training'] is True
    latency = report['runtimes']['latency']
    assert latency['e1']['eager']['n'] == latency['e3']['channels_last']['n'] == 2
    assert 'pip install openvino' in latency['e1']['openvino']['skipped']
    text = (tmp_path / 'b.md').read_text()
    assert 'Training not measured' in text and '| openvino | skipped: ' in text and '| e3 | ' in text
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(['--skip-training', '--data-opt', 'x.yml'])
    assert '--data-opt measures training iterations: not with --skip-training' in capsys.readouterr().err


def test_markdown_without_the_optional_sections():
    """A report without data wait or precision (or from before the fast settings) still renders."""
    row = dict(step_s=1.0, samples_per_s=2.0, forward_gmacs=3.0)
    inf = dict(gmacs=1.0, ms={'eager': 2.0, 'channels_last': 1.5}, achieved_gflops=1.0)
    report = dict(environment=dict(cpu='c', cpu_count=2, torch_threads=2, torch='t', basicsr='b', onnxruntime='o',
                                   srdistill='s', platform='p', device='cpu'),
                  settings=dict(num_feat=4, num_block=3, exit=1, scale=4, batch=2, gt_size=16, lr_size=[8, 8],
                                warmup=1, repeats=1),
                  training=[dict(row, model=m) for m in ('a', 'b', 'c')],
                  inference=[dict(inf, output='e1'), dict(inf, output='e3')], matmul_gflops=10.0)
    text = markdown(report)
    assert '## Training throughput' in text and 'Data loading' not in text and 'Precision' not in text


def test_hardware_reference_in_the_convolutions_precision():
    """On CUDA the convolutions run in TF32, so the report also compares them with a TF32 matmul; the fp32 matmul's
    size is the one measured, and measuring leaves the global TF32 setting as it was."""
    achieved = 40.0
    text = '\n'.join(_hardware_lines(dict(matmul_gflops=50.0, matmul_n=8192, matmul_tf32_gflops=200.0), achieved))
    assert 'A 8192x8192 fp32 matmul reaches 50.0 GFLOP/s' in text and '80% of it' in text
    assert 'TF32: 200.0 GFLOP/s, of which the network reaches 20%' in text
    assert 'TF32' not in '\n'.join(_hardware_lines(dict(matmul_gflops=50.0), achieved))  # CPU / older report
    before = torch.backends.cuda.matmul.allow_tf32
    gflops, n = matmul_gflops('cpu', n=64, repeats=1, tf32=not before)
    assert gflops > 0 and n == 64 and torch.backends.cuda.matmul.allow_tf32 == before
    assert matmul_gflops('cpu', repeats=1)[1] == 2048


def test_data_verdict_follows_the_device():
    """Starved on a GPU: the prefetch/pinning advice; on a CPU, where workers take the model's cores: .npy."""
    run = dict(options='o.yml', name='n', model_type='SelfDistillSRModel', network={'type': 'MultiExitSRResNet'},
               dataset='291', dataset_type='PairedImageDataset', samples=4, io_backend='disk', batch=2, gt_size=16,
               num_worker_per_gpu=2, prefetch_mode='none', pin_memory=False, amp='fp32', channels_last=True,
               warmup=1, iters=2, data_wait_s=0.001, max_data_wait_s=0.002, data_fraction=0.01, step_s=0.1,
               free_samples_per_s=80.0, model_samples_per_s=100.0, data_cost=0.2, epoch_restarts=0)
    gpu = '\n'.join(_data_wait_lines([dict(run, device='cuda')], None))
    cpu = '\n'.join(_data_wait_lines([dict(run, device='cpu')], None))
    assert 'starves the device: `pin_memory: true`' in gpu and '20.0% of the free-running throughput' in gpu
    assert 'slows training: on a CPU' in cpu and 'pin_memory: true' not in cpu.split('|')[-1]
    calm = '\n'.join(_data_wait_lines([dict(run, device='cuda', data_cost=0.01)], None))
    assert 'does not starve the device (1.0% of the free-running throughput' in calm


def test_cli_errors(tmp_path, tiny_ckpt_and_set, capsys):
    with pytest.raises(SystemExit):
        main(['--ckpt', tiny_ckpt_and_set[0]])
    assert '--ckpt needs --val-dir' in capsys.readouterr().err
    with pytest.raises(UserError, match='does not exist'):
        measure_data_wait(str(tmp_path / 'missing.yml'), 'cpu')
