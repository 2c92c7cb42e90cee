"""Every tool on a tiny MultiExitEDSR, with both exit heads: training, evaluation, export (every format and INT8),
inference (checkpoint + exit, every exported file, tiles), ablation (with the weight-inherit baseline) and the
benchmark; and the two EDSR options files. EDSR's ``res_scale`` is not a weight: each test checks that the run's
value (0.1 here, BasicSR's default is 1) reaches the tool's output."""
import json
import math
import os
import sys
import warnings
from os import path as osp

import cv2
import numpy as np
import pytest
import torch
import yaml
from basicsr.archs.edsr_arch import EDSR
from basicsr.utils import img2tensor, tensor2img
from conftest import REPO, make_paired_folder, photo_crops, run_train, write_opt
from test_ablate import _plan
from test_model import _batch, _model

from srdistill.archs.checkpoints import load_checkpoint
from srdistill.archs.cost import exit_macs
from srdistill.archs.multi_exit import build_network
from srdistill.export.formats import JIT_DEPRECATION
from srdistill.metrics.psnr_ssim_y_metric import calculate_psnr_y
from srdistill.utils.errors import UserError
from srdistill.utils.matlab_imresize import imresize

RES_SCALE = 0.1  # not BasicSR's default (1): a tool that loses it gives another output
TINY_EDSR = {'type': 'MultiExitEDSR', 'num_feat': 8, 'num_block': 3, 'exits': [1], 'upscale': 4,
             'res_scale': RES_SCALE}
HEADS = ['full', 'light']


def _tiny_edsr(head, **changes):
    return dict(TINY_EDSR, **({'exit_head': head} if head == 'light' else {}), **changes)


def _rgb01(img):
    """uint8 BGR (h, w, 3) -> float32 RGB (1, 3, h, w) in [0, 1], as the tools feed the network."""
    return img2tensor(img / 255., bgr2rgb=True, float32=True)[None]


def _uint8(out):
    """(1, 3, H, W) RGB in [0, 1] -> uint8 BGR (H, W, 3), rounded as the tools write images."""
    return np.floor(out[0].clamp(0, 1).numpy().transpose(1, 2, 0)[..., ::-1] * 255 + 0.5).astype(np.uint8)


def _fit(net, steps=40):
    """``steps`` Adam steps of every output on 4 real crops: an untrained EDSR's output is its mean image (about 13 dB),
    on which a lost res_scale or a wrong INT8 scale would hardly show."""
    hr = photo_crops(4, 48, seed=3)
    gt = torch.cat([_rgb01(h) for h in hr])
    lq = torch.cat([_rgb01(imresize(h, 1 / 4)) for h in hr])
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(steps):
        optimizer.zero_grad()
        sum((out - gt).abs().mean() for out in net(lq, exit='all').values()).backward()
        optimizer.step()
    return net.eval()


@pytest.fixture(scope='module', params=HEADS)
def run_ckpt(request, tmp_path_factory):
    """A tiny MultiExitEDSR (res_scale 0.1), briefly trained, saved as BasicSR saves a run: ``exp/models/net_g_5.pth``
    with the options file BasicSR copies into ``exp/`` (where the checkpoint loader reads res_scale from). Returns
    (checkpoint path, the network, its head); tests only read them."""
    head = request.param
    root = tmp_path_factory.mktemp(f'run_{head}')
    torch.manual_seed(0)
    net = _fit(build_network(_tiny_edsr(head)))
    (root / 'exp' / 'models').mkdir(parents=True)
    ckpt = root / 'exp' / 'models' / 'net_g_5.pth'
    torch.save({'params': net.state_dict()}, ckpt)
    write_opt(root / 'exp' / 'train_tiny_edsr.yml', {'name': 'exp', 'network_g': _tiny_edsr(head)})
    return str(ckpt), net, head


def _other_res_scale(net):
    """The same weights in a network with BasicSR's default res_scale (1): what a tool that lost it would run."""
    other = build_network(dict(net.arch_opt, type='MultiExitEDSR', res_scale=1)).eval()
    other.load_state_dict(net.state_dict(), strict=True)
    return other


# --- options files ---------------------------------------------------------------------------------------------------

# file -> (blocks, channels, res_scale, exit, GMACs of the exit / of the final output at 1280x720, full head:
# docs/architecture.md's table)
EDSR_OPTIONS = {'edsr_baseline_sd_x4.yml': (16, 64, 1, 4, 63.3, 114.2), 'edsr_sd_x4.yml': (32, 256, 0.1, 8, 1263.8,
                                                                                                 2894.5)}


@pytest.mark.parametrize('name', sorted(EDSR_OPTIONS))
def test_edsr_options_files_pass_the_checks_and_build_on_meta(name, tmp_path, monkeypatch, capsys):
    from srdistill.train import main
    path = osp.join(REPO, 'options', name)
    with open(path) as f:
        opt = yaml.safe_load(f)
    with open(osp.join(REPO, 'options', 'sd_x4.yml')) as f:
        sd = yaml.safe_load(f)
    # the self-distillation loss and recipe, data, validation and logging of options/sd_x4.yml: only the network differs
    assert {k: v for k, v in opt.items() if k not in ('name', 'network_g')} == {
        k: v for k, v in sd.items() if k not in ('name', 'network_g')}
    blocks, channels, res_scale, exit_depth, exit_gmacs, final_gmacs = EDSR_OPTIONS[name]
    assert opt['name'] == f'SD_EDSR{"baseline" if channels == 64 else ""}{blocks}e{exit_depth}_x4_DIV2K_B16'
    with torch.device('meta'):
        net = build_network(opt['network_g'])
    assert type(net).__name__ == 'MultiExitEDSR' and net.depths == (exit_depth, blocks)
    assert net.conv_first.out_channels == channels and net.body[0].res_scale == res_scale
    assert net.exit_network_opt(exit_depth) == dict(type='EDSR', num_in_ch=3, num_out_ch=3, num_feat=channels,
                                                    num_block=exit_depth, upscale=4, res_scale=res_scale,
                                                    img_range=255., rgb_mean=[0.4488, 0.4371, 0.4040])
    assert exit_macs(net, exit_depth) / 1e9 == pytest.approx(exit_gmacs, abs=0.05)
    assert exit_macs(net, blocks) / 1e9 == pytest.approx(final_gmacs, abs=0.05)

    # every up-front check (keys, values, network, losses, switches) passes; the first thing missing is DIV2K
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, 'argv', ['train.py', '-opt', path])
    with pytest.raises(SystemExit) as exc:
        main(str(tmp_path))
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert 'datasets.train.dataroot_gt: folder datasets/DIV2K/HR_sub does not exist.' in err
    assert 'DIV2K is not prepared' in err and not (tmp_path / 'experiments').exists()


# --- training --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('head', HEADS)
def test_one_training_step_trains_every_part(tiny_opt, tmp_path, head):
    tiny_opt['network_g'] = _tiny_edsr(head)
    torch.manual_seed(0)
    opt, model = _model(tiny_opt, tmp_path)
    assert type(model.net_g).__name__ == 'MultiExitEDSR' and model.net_g.body[0].res_scale == RES_SCALE
    before = {k: v.clone() for k, v in model.net_g.state_dict().items()}
    model.feed_data(_batch(opt))
    model.optimize_parameters(1)
    assert set(model.log_dict) == {'l_pix_e1', 'l_distill_e1', 'l_pix_e3', 'l_total'}
    assert all(math.isfinite(v) and v > 0 for v in model.log_dict.values())
    assert model.log_dict['l_total'] == pytest.approx(sum(v for k, v in model.log_dict.items() if k != 'l_total'),
                                                      rel=1e-5)
    after = model.net_g.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    tail = 'exit_tails.1.conv.' if head == 'light' else 'exit_tails.1.conv_after_body.'
    for prefix in ('conv_first.', 'body.0.', 'body.2.', tail, 'conv_after_body.', 'upsample.', 'conv_last.'):
        assert any(k.startswith(prefix) for k in changed), f'{prefix} did not change'


def test_training_entry_point_validates_each_exit_and_its_checkpoint_keeps_res_scale(tiny_opt, tmp_path):
    """tools/train.py on a tiny EDSR: per-exit validation in the log, and the checkpoint loads (strictly) as the
    network that trained, res_scale included (from the options file BasicSR copied into the run folder)."""
    tiny_opt.update(name='tiny_edsr', network_g=dict(TINY_EDSR))
    tiny_opt['train']['total_iter'] = 2
    tiny_opt['logger']['use_tb_logger'] = False
    result = run_train(tmp_path, '-opt', write_opt(tmp_path / 'edsr.yml', tiny_opt))
    assert result.returncode == 0, result.stderr[-3000:]
    exp = tmp_path / 'experiments' / 'tiny_edsr'
    log = next(exp.glob('train_*.log')).read_text()
    for metric in ('psnr_e1', 'psnr_e3', 'ssim_e1', 'ssim_e3'):
        assert f'# {metric}: ' in log, metric
    net, net_opt = load_checkpoint(str(exp / 'models' / 'net_g_2.pth'))
    assert net_opt == dict(TINY_EDSR, num_in_ch=3, num_out_ch=3)
    assert net.body[2].res_scale == RES_SCALE


# --- evaluation ------------------------------------------------------------------------------------------------------

@pytest.fixture
def bench_set(tmp_path):
    """A prepared benchmark set of real photo crops (``SetA/HR``, ``SetA/LR_bicubic/X4``: 32x32 LR images)."""
    from srdistill.data.prepare import prepare_paired_folder
    gt, _ = make_paired_folder(str(tmp_path / 'raw'), n=2, size=128, seed=1)
    prepare_paired_folder([gt], str(tmp_path / 'datasets' / 'SetA'), scales=(4, ), mod_crop_hr=False,
                          keep_channels=True, workers=1, show_progress=False)
    return tmp_path / 'datasets'


def _pairs(root):
    """(HR, LR) uint8 images of ``root/SetA``."""
    folders = (root / 'SetA' / 'HR', root / 'SetA' / 'LR_bicubic' / 'X4')
    return [tuple(cv2.imread(str(f / n)) for f in folders) for n in sorted(os.listdir(folders[0]))]


def _psnr_y(net, depth, pairs):
    """Mean Y PSNR of output ``depth`` over (HR, LR) image pairs, computed here from the network itself."""
    values = []
    for gt, lq in pairs:
        with torch.no_grad():
            sr = tensor2img([net(_rgb01(lq), exit=depth)])
        values.append(calculate_psnr_y(sr, gt[:sr.shape[0], :sr.shape[1]], crop_border=4))
    return float(np.mean(values))


def test_evaluate_reports_every_exit_with_the_runs_res_scale(run_ckpt, bench_set, tmp_path, capsys):
    from srdistill.evaluation.evaluate_cli import main
    ckpt, net, head = run_ckpt
    out = tmp_path / 'out'
    # 24-px tiles on 32-px images, at the default overlap (exact: twice the receptive radius of the deepest output)
    assert main(['--ckpt', ckpt, '--datasets', 'SetA', '--data-root', str(bench_set), '--out', str(out), '--tile', '24',
                 '--mac-size', '32', '32', '--latency-repeats', '1', '--device', 'cpu', '--picture-images', '1']) == 0
    rows = {r['output']: r for r in json.load(open(out / 'results.json'))['rows'] if r['model'] == 'exp'}
    assert list(rows) == ['e1', 'e3']
    pairs = _pairs(bench_set)
    other = _other_res_scale(net)
    for depth in (1, 3):
        row = rows[f'e{depth}']
        assert math.isfinite(row['SetA/psnr']) and 0 < row['SetA/ssim'] <= 1 and row['latency_ms'] > 0
        # the PSNR of the network with res_scale 0.1, tiled or not; with res_scale 1 it is another number
        assert row['SetA/psnr'] == pytest.approx(_psnr_y(net, depth, pairs), abs=1e-3)
        assert abs(row['SetA/psnr'] - _psnr_y(other, depth, pairs)) > 0.05
        sub = net.exit_network(depth)
        assert row['params'] == sum(p.numel() for p in sub.parameters()) == net.exit_parameters(depth)
        assert row['macs'] == exit_macs(net, depth, (32, 32))
    assert rows['e1']['macs'] < rows['e3']['macs']
    assert (out / 'tradeoff.png').read_bytes()[:4] == b'\x89PNG' and (out / 'comparison.png').is_file()
    assert '| exp | e1 |' in capsys.readouterr().out


# --- export ----------------------------------------------------------------------------------------------------------

FORMATS = ('pth', 'safetensors', 'onnx', 'torchscript')


def _lr_batch():
    """Two real 20x20 LR crops: another batch size and image size than the exporter's check image (dynamic axes)."""
    return torch.cat([_rgb01(c) for c in photo_crops(2, 20, seed=7)])


@pytest.fixture(scope='module')
def exports(run_ckpt, tmp_path_factory):
    """Every exit of ``run_ckpt`` exported in every format, and exit 1 also as INT8 ONNX. Returns (folder, sidecars)."""
    from srdistill.export.exporter import export
    out = tmp_path_factory.mktemp(f'exports_{run_ckpt[2]}')
    sidecars = export(run_ckpt[0], FORMATS, str(out), exits='all')
    sidecars += export(run_ckpt[0], ('onnx', ), str(out), exits=[1], int8=True)  # e1's ONNX is kept, not redone
    return out, sidecars


def test_every_format_of_every_exit_is_the_exit_with_its_res_scale(run_ckpt, exports):
    import onnxruntime as ort
    from safetensors import safe_open
    from safetensors.torch import load_file

    from srdistill.export.exporter import TOLERANCE
    ckpt, net, head = run_ckpt
    out, sidecars = exports
    assert [s['file'] for s in sidecars] == [f'exp_e{d}_x4{suffix}' for d in (1, 3)
                                             for suffix in ('.pth', '.safetensors', '.onnx', '.torchscript.pt')] + [
                                                 'exp_e1_x4.onnx', 'exp_e1_x4.int8.onnx']
    assert sidecars[-2] == sidecars[2]  # read back, not written again
    lr = _lr_batch()
    other = _other_res_scale(net)
    for depth in (1, 3):
        with torch.no_grad():
            expected = net(lr, exit=depth)
            assert (expected - other(lr, exit=depth)).abs().max() > 1e-2  # res_scale changes the output
        network = net.exit_network_opt(depth)
        light = head == 'light' and depth == 1
        assert network['type'] == ('EDSRLight' if light else 'EDSR') and network['res_scale'] == RES_SCALE
        for side in sidecars[(depth > 1) * 4:(depth > 1) * 4 + 4]:
            assert side['network'] == network and side['architecture'] == network['type'] and side['exit'] == depth
            assert side['max_abs_diff'] <= TOLERANCE[side['format']] and side['params'] == net.exit_parameters(depth)
        # pth: BasicSR's layout, loaded strictly by the standalone network; for the full head BasicSR's own EDSR
        params = torch.load(out / f'exp_e{depth}_x4.pth', weights_only=True)['params']
        if light:
            sub = build_network(network)
        else:
            sub = EDSR(num_in_ch=3, num_out_ch=3, num_feat=8, num_block=depth, upscale=4, res_scale=RES_SCALE)
        sub.load_state_dict(params, strict=True)
        safetensors = str(out / f'exp_e{depth}_x4.safetensors')
        assert all(torch.equal(v, params[k]) for k, v in load_file(safetensors).items())
        with safe_open(safetensors, framework='pt') as f:
            assert json.loads(f.metadata()['network']) == network
        onnx_out = ort.InferenceSession(str(out / f'exp_e{depth}_x4.onnx'), providers=['CPUExecutionProvider']).run(
            None, {'lr': lr.numpy()})[0]
        with warnings.catch_warnings():
            warnings.filterwarnings('ignore', message=JIT_DEPRECATION, category=FutureWarning)
            scripted = torch.jit.load(str(out / f'exp_e{depth}_x4.torchscript.pt'))
        with torch.no_grad():
            assert (sub.eval()(lr) - expected).abs().max() <= 1e-6
            assert (scripted(lr) - expected).abs().max() <= TOLERANCE['torchscript']
        assert np.abs(onnx_out - expected.numpy()).max() <= TOLERANCE['onnx']


# --- inference -------------------------------------------------------------------------------------------------------

def test_infer_runs_the_checkpoint_exits_and_every_export_in_exact_tiles(run_ckpt, exports, tmp_path, capsys):
    """tools/infer.py with 24-px tiles on a 40-px image (4 tiles) at its default overlap, which each model's receptive
    radius sets: the checkpoint with --exit, and exit 1 exported in every format and as INT8. Each gives the untiled
    output of the network with res_scale 0.1 (INT8: close to it), not that of res_scale 1."""
    from srdistill.inference.infer_cli import main
    from srdistill.inference.runners import load_runner
    ckpt, net, head = run_ckpt
    folder, sidecars = exports
    lr = photo_crops(1, 40, seed=11)[0]
    (tmp_path / 'in').mkdir()
    cv2.imwrite(str(tmp_path / 'in' / 'photo.png'), lr)
    int8 = sidecars[-1]
    if head == 'light':  # a standalone light exit (EDSRLight) has one output
        with pytest.raises(UserError, match='exp_e1_x4.pth is one exported exit, not a multi-exit checkpoint'):
            load_runner(str(folder / 'exp_e1_x4.pth'), 1)
    assert int8['format'] == 'onnx-int8' and math.isfinite(int8['int8']['psnr']) and abs(int8['psnr_change']) < 0.5
    other = _other_res_scale(net)
    models = [(ckpt, ['--exit', '1'], 1), (ckpt, ['--exit', '3'], 3), (ckpt, [], 3)] + [
        (str(folder / f'exp_e1_x4{suffix}'), ['--trust-torchscript'] if 'torchscript' in suffix else [], 1)
        for suffix in ('.pth', '.safetensors', '.onnx', '.torchscript.pt', '.int8.onnx')]
    for i, (model, args, depth) in enumerate(models):
        with torch.no_grad():
            expected, lost = (_uint8(n(_rgb01(lr), exit=depth)).astype(int) for n in (net, other))
        runner = load_runner(model, depth if args[:1] == ['--exit'] else None, trust_torchscript=True)
        assert runner.radius == net.receptive_radius(depth), model  # known in every format: the tiles are exact
        assert main(['--model', model, *args, '--input', str(tmp_path / 'in'), '--output', str(tmp_path / f'o{i}'),
                     '--tile', '24']) == 0
        assert '1 of 1 images written' in capsys.readouterr().out
        out = cv2.imread(str(tmp_path / f'o{i}' / 'photo.png')).astype(int)
        assert out.shape == (160, 160, 3)
        if model.endswith('.int8.onnx'):
            assert 10 * np.log10(255**2 / np.mean((out - expected)**2)) > 40, model
        else:
            assert np.abs(out - expected).max() <= 1, model
        assert np.abs(out - lost).max() > 2, model


# --- ablation --------------------------------------------------------------------------------------------------------

def _ablation_plan(tmp_path):
    """test_ablate.py's tiny plan and data, on EDSR (res_scale 0.1) with two runs: a light-head self-distillation run,
    and the weight-inherit baseline cut out of it (its first block and EDSR's final tail), fine-tuned as a plain
    1-block EDSR."""
    path = _plan(tmp_path, budgets=('iterations', ))
    plan = yaml.safe_load(open(path))
    base = yaml.safe_load(open(plan['base']))
    base['network_g'] = dict(TINY_EDSR, num_feat=4)
    write_opt(plan['base'], base)
    plan.pop('comparisons')  # test_ablate.py's pairs name runs this plan replaces
    plan.update(iterations=2, student=1, runs={
        'sd_light': {'network_g': {'exit_head': 'light'}},
        'inherit': {'init_from': {'run': 'sd_light', 'depth': 1}, 'network_g': {'num_block': 1, 'exits': []},
                    'train': {'pixel_opt': {'pixel_weight': 1.0, 'distill_weight': 0}}},
    })
    plan['evaluate']['datasets'] = ['Val']
    return write_opt(path, plan)


def test_ablation_trains_the_light_head_and_the_weight_inherit_baseline(tmp_path):
    from srdistill.ablation.ablate_cli import main
    from srdistill.evaluation.exits import dataset_pairs, evaluate
    out = tmp_path / 'out'
    assert main(['-opt', _ablation_plan(tmp_path), '--out', str(out)]) == 0
    results = {n: json.load(open(out / 'results' / f'{n}__s0__iterations.json')) for n in ('sd_light', 'inherit')}
    assert list(results['sd_light']['last_all_outputs']['Val']) == ['e1', 'e3']
    assert list(results['inherit']['last_all_outputs']['Val']) == ['e1']  # a plain EDSR-1: its final output
    pairs = dataset_pairs('Val', str(tmp_path / 'data' / 'bench'), 4)
    for name, result in results.items():
        assert result['output'] == 'e1' and math.isfinite(result['last']['Val']['psnr'])
        # the score is that of the trained weights in the run's network, res_scale 0.1 included
        ckpt = out / 'experiments' / f'{name}__s0__iterations' / 'models' / 'net_g_latest.pth'
        net_opt = yaml.safe_load(open(out / 'options' / f'{name}__s0__iterations.yml'))['network_g']
        assert net_opt['res_scale'] == RES_SCALE
        net = build_network(net_opt)
        net.load_state_dict(torch.load(ckpt, weights_only=True)['params'], strict=True)
        for n, want in ((net.eval(), True), (_other_res_scale(net), False)):
            means, _ = evaluate(n, pairs, 4, bicubic=False)
            assert (means['e1']['psnr'] == pytest.approx(result['last']['Val']['psnr'], abs=1e-9)) is want, name
    # the inherited start: blocks 1..1 and EDSR's final tail of the light-head run, as BasicSR's EDSR(num_block=1)
    cut = torch.load(out / 'options' / 'inherit__s0__iterations_init_e1.pth', weights_only=True)['params']
    source = torch.load(out / 'experiments' / 'sd_light__s0__iterations' / 'models' / 'net_g_latest.pth',
                        weights_only=True)['params']
    EDSR(3, 3, num_feat=4, num_block=1, res_scale=RES_SCALE).load_state_dict(cut, strict=True)
    assert all(torch.equal(v, source[k]) for k, v in cut.items())
    inherit_opt = yaml.safe_load(open(out / 'options' / 'inherit__s0__iterations.yml'))
    assert inherit_opt['path']['pretrain_network_g'].endswith('inherit__s0__iterations_init_e1.pth')
    assert (out / 'table.md').is_file()


# --- benchmark -------------------------------------------------------------------------------------------------------

def test_benchmark_cli_on_edsr_with_a_light_head_checkpoint(bench_set, tmp_path, capsys):
    """tools/benchmark.py --arch MultiExitEDSR --exit-head light: training rows against BasicSR's own EDSR, per-exit
    latency (ONNX included; the light exit's multiply-adds), and the precision check of a light-head checkpoint
    (res_scale 0.1 from its run folder)."""
    from srdistill.benchmark.cli import main
    torch.manual_seed(0)
    net = _fit(build_network(_tiny_edsr('light', num_feat=4)), steps=10)
    (tmp_path / 'exp' / 'models').mkdir(parents=True)
    ckpt = tmp_path / 'exp' / 'models' / 'net_g_10.pth'
    torch.save({'params': net.state_dict()}, ckpt)
    write_opt(tmp_path / 'exp' / 'train.yml', {'network_g': _tiny_edsr('light', num_feat=4)})
    assert main(['--arch', 'MultiExitEDSR', '--exit-head', 'light', '--num-feat', '4', '--num-block', '3',
                 '--exit', '1', '--batch', '2',
                 '--gt-size', '16', '--lr-size', '8', '8', '--warmup', '1', '--repeats', '1', '--no-compile',
                 '--device', 'cpu', '--ckpt', str(ckpt), '--val-dir', str(bench_set / 'SetA'),
                 '--out', str(tmp_path / 'bench.md')]) == 0
    report = json.load(open(tmp_path / 'bench.json'))
    assert report['settings']['arch'] == 'MultiExitEDSR' and report['settings']['exit_head'] == 'light'
    sd, plain, basic = report['training'][:3]
    assert [r['model'] for r in (sd, plain, basic)] == ['self-distillation (exit 1)', 'same trunk, no exit',
                                                        'BasicSR SRModel + EDSR']
    assert all(r['step_s'] > 0 for r in report['training'])
    with torch.device('meta'):
        tiny = build_network(dict(type='MultiExitEDSR', num_feat=4, num_block=3, exits=[1], exit_head='light'))
    # the same network and loss as BasicSR's EDSR: as many multiply-adds, and about as many operators per step
    assert sd['forward_gmacs'] > plain['forward_gmacs'] == basic['forward_gmacs']
    assert abs(plain['aten_ops'] - basic['aten_ops']) <= 5
    inference = {r['output']: r for r in report['inference']}
    assert list(inference) == ['e1', 'e3'] and set(inference['e1']['ms']) == {'eager', 'channels_last', 'onnxruntime'}
    for depth in (1, 3):
        assert inference[f'e{depth}']['gmacs'] == pytest.approx(exit_macs(tiny, depth, (32, 32)) / 1e9)
    prec = report['precision']
    assert prec['network']['res_scale'] == RES_SCALE and prec['network']['exit_head'] == 'light' and prec['passed']
    fp32 = {r['output']: r['psnr'] for r in prec['rows'] if r['variant'] == 'fp32'}
    assert fp32 == pytest.approx({f'e{d}': _psnr_y(net, d, _pairs(bench_set)) for d in (1, 3)}, abs=1e-6)
    text = capsys.readouterr().out
    assert 'Settings: EDSR-3 (4 channels), exit after block 1 (light head)' in text and '| e3 | channels_last |' in text
    assert 'EDSR-3, 4 channels, exits [1], x4' in text


def test_onnx_receptive_radius_of_an_untrained_light_exit(tmp_path):
    """ONNX drops a convolution's all-zero bias (an untrained light head's): the runner still knows the network."""
    import onnx

    from srdistill.export.formats import write_onnx
    from srdistill.inference.runners import OnnxRunner
    torch.manual_seed(0)
    net = build_network(_tiny_edsr('light')).eval()
    sub = net.exit_network(1)
    assert not sub.light_tail.conv.bias.any()
    x = _lr_batch()[:1]
    with torch.no_grad():
        write_onnx(str(tmp_path / 'e1.onnx'), sub, x, net(x, exit=1).numpy())
    assert 'light_tail.conv.bias' not in {t.name for t in onnx.load(str(tmp_path / 'e1.onnx')).graph.initializer}
    assert OnnxRunner(str(tmp_path / 'e1.onnx')).radius == net.receptive_radius(1) == 4


def test_an_exported_pth_copied_alone_keeps_res_scale(run_ckpt, exports, tmp_path):
    """The .pth export stores its standalone network's options in its payload (``'network'``), so the res_scale its
    weights cannot say survives a copy without the sidecar, in evaluation (load_checkpoint) as in inference."""
    import shutil

    from srdistill.archs.checkpoints import load_checkpoint
    from srdistill.inference.runners import load_runner
    _, net, _ = run_ckpt
    out, _ = exports
    alone = tmp_path / 'copied.pth'
    shutil.copy(out / 'exp_e3_x4.pth', alone)  # no copied.pth.json beside it
    assert torch.load(alone, weights_only=True)['network'] == net.exit_network_opt(3)
    loaded, opt = load_checkpoint(str(alone))
    assert opt['res_scale'] == RES_SCALE and loaded.body[0].res_scale == RES_SCALE
    lr = _lr_batch()
    with torch.no_grad():
        assert (loaded(lr) - net(lr, exit=3)).abs().max() <= 1e-6
    runner = load_runner(str(alone))
    with torch.no_grad():
        assert np.abs(runner(lr.numpy()) - net(lr, exit=3).clamp(0, 1).numpy()).max() <= 1e-6
