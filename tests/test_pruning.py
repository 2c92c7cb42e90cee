"""Structured pruning: the per-width architecture, the magnitude pruner (exact on dead channels), golden widths and
MACs, the ablation plan's pruned runs (prune, fine-tune with the deep output as teacher, evaluate) and their export."""
import copy
import json
import os
from os import path as osp

import pytest
import torch
import yaml
from basicsr.archs.srresnet_arch import MSRResNet
from test_ablate import _plan

from srdistill.ablation.ablate_cli import main as ablate_main
from srdistill.ablation.plan import expand, load_plan
from srdistill.archs.checkpoints import load_checkpoint
from srdistill.archs.cost import exit_macs
from srdistill.archs.multi_exit import build_network, multi_exit_archs, network_opt_from_state_dict
from srdistill.archs.multi_exit_srresnet_arch import MultiExitSRResNet
from srdistill.archs.pruned_srresnet_arch import PrunedMSRResNet
from srdistill.export.exporter import export
from srdistill.pruning.channel_pruning import (
    channel_groups,
    kept_count,
    macs_per_lr_pixel,
    prune_state_dict,
    pruned_options,
)
from srdistill.pruning.prune_cli import main as prune_main
from srdistill.utils.errors import UserError


@pytest.mark.parametrize('scale', [2, 3, 4])
def test_equal_widths_are_msrresnet_weight_for_weight(scale):
    torch.manual_seed(0)
    plain = MSRResNet(num_feat=8, num_block=2, upscale=scale).eval()
    pruned = PrunedMSRResNet(num_feat=8, num_block=2, upscale=scale).eval()
    pruned.load_state_dict(plain.state_dict(), strict=True)
    x = torch.rand(1, 3, 9, 11)
    with torch.no_grad():
        assert torch.equal(plain(x), pruned(x))
        assert torch.equal(pruned(x, exit=2), pruned(x, exit='all')[2])
    # an equal-width state dict is a plain MSRResNet (a multi-exit network with no exits); a pruned one is its own
    assert network_opt_from_state_dict(plain.state_dict())['type'] == 'MultiExitSRResNet'
    narrow = PrunedMSRResNet(num_feat=8, num_block=2, upscale=scale, block_feat=[4, 8], up_feat=[4] * (scale // 2),
                             hr_feat=6)
    opt = network_opt_from_state_dict(narrow.state_dict())
    assert opt == dict(type='PrunedMSRResNet', num_in_ch=3, num_out_ch=3, num_feat=8, num_block=2, upscale=scale,
                       block_feat=[4, 8], up_feat=[4] * (scale // 2), hr_feat=6)
    rebuilt = build_network(opt).eval()
    rebuilt.load_state_dict(narrow.state_dict(), strict=True)  # raises on any missing, unexpected or mis-shaped key
    with torch.no_grad():
        assert torch.equal(rebuilt(x), narrow.eval()(x))
    assert 'PrunedMSRResNet' not in multi_exit_archs()  # it has the interface, not exits


def test_kept_counts_and_pruned_macs_golden():
    assert [kept_count(32, r) for r in (0, 0.25, 0.5, 0.75)] == [32, 24, 16, 8]
    assert kept_count(30, 0.5) == 16 and kept_count(3, 0.5) == 2 and kept_count(8, 0.99) == 4
    with pytest.raises(ValueError, match=r'\[0, 1\)'):
        kept_count(32, 1.0)
    full = pruned_options(dict(type='MSRResNet', num_feat=32, num_block=8, upscale=4), 0)
    half = pruned_options(dict(type='MSRResNet', num_feat=32, num_block=8, upscale=4), 0.5)
    assert half['num_feat'] == 16 and half['block_feat'] == [16] * 8 and half['up_feat'] == [16, 16]
    # by hand, per LR pixel of a 1280x720 output (57600 LR pixels), for width w: conv_first 3*w*9, 8 blocks of
    # 2*w*w*9, upconv1 w*4w*9, upconv2 at 2x w*4w*9*4, conv_hr at 4x w*w*9*16, conv_last at 4x w*3*9*16
    for opt, per_px in ((full, 493920), (half, 127152)):
        with torch.device('meta'):
            net = build_network(opt)
        assert exit_macs(net, 8) == per_px * 57600
    narrow = dict(num_in_ch=3, num_out_ch=3, num_feat=12, num_block=2, upscale=4, block_feat=[4, 8], up_feat=[8, 4],
                  hr_feat=16)
    with torch.device('meta'):
        assert exit_macs(PrunedMSRResNet(**narrow), 2) == macs_per_lr_pixel(narrow) * 57600
    assert macs_per_lr_pixel(dict(full, type=None)) == 493920
    # the tail is 70% of an SRResNet-8's multiply-adds (why the upsampling layers must be pruned too)
    assert (36864 + 147456 + 147456 + 13824) / 493920 == pytest.approx(0.70, abs=0.005)


def _kill(state, opt, dead):
    """Zero every writer of channels ``dead`` in every group and shrink its readers: those channels carry zeros."""
    for group in channel_groups(opt):
        for prefix, n in group['writers']:
            rows = [c * n + j for c in dead for j in range(n)]
            state[f'{prefix}.weight'][rows] = 0
            state[f'{prefix}.bias'][rows] = 0
        for prefix, _ in group['readers']:
            state[f'{prefix}.weight'][:, dead] *= 1e-3


@pytest.mark.parametrize('scale', [2, 4])
def test_pruning_dead_channels_changes_nothing(scale):
    """Channels that carry zeros everywhere score lowest and are the ones removed: the output stays the same."""
    torch.manual_seed(1)
    net = MSRResNet(num_feat=8, num_block=2, upscale=scale).eval()
    state = net.state_dict()
    opt = dict(num_feat=8, num_block=2, upscale=scale, block_feat=[8, 8], up_feat=[8] * (scale // 2), hr_feat=8)
    _kill(state, opt, [1, 6])
    net.load_state_dict(state)
    pruned_opt, pruned_state, kept = prune_state_dict(state, 0.25, round_to=2)
    assert all(idx == [0, 2, 3, 4, 5, 7] for idx in kept.values()), kept
    pruned = build_network(pruned_opt).eval()
    pruned.load_state_dict(pruned_state, strict=True)
    x = torch.rand(1, 3, 10, 12)
    with torch.no_grad():
        assert (net(x) - pruned(x)).abs().max() < 1e-5
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in net.parameters())


def test_pruning_keeps_the_largest_filters_golden():
    torch.manual_seed(2)
    state = MSRResNet(num_feat=4, num_block=1, upscale=2).state_dict()
    for k in state:
        state[k] = torch.ones_like(state[k])
    state['body.0.conv1.weight'][[0, 3]] *= 5  # block 0's inner channels 0 and 3 have the largest filters
    _, _, kept = prune_state_dict(state, 0.5, round_to=1)
    assert kept['block0'] == [0, 3]


def test_global_mode_spends_the_uniform_budget_where_scores_are_high():
    torch.manual_seed(3)
    net = MSRResNet(num_feat=16, num_block=4, upscale=4).eval()
    state = net.state_dict()
    with torch.no_grad():  # make block 2's inner channels matter most and conv_hr's least
        state['body.2.conv1.weight'] *= 10
        state['conv_hr.weight'] *= 0.1
    uniform, _, _ = prune_state_dict(state, 0.5, round_to=4)
    opt, pruned_state, kept = prune_state_dict(state, 0.5, round_to=4, mode='global')
    assert opt['type'] == 'PrunedMSRResNet' and macs_per_lr_pixel(opt) <= macs_per_lr_pixel(dict(uniform))
    assert macs_per_lr_pixel(opt) > 0.9 * macs_per_lr_pixel(dict(uniform))  # within one removal step of the budget
    assert opt['block_feat'][2] > opt['hr_feat'] and len(set(opt['block_feat'] + [opt['hr_feat']])) > 1
    pruned = build_network(opt)
    pruned.load_state_dict(pruned_state, strict=True)  # the widths chain
    with pytest.raises(ValueError, match=r"mode must be one of \['uniform', 'global'\]"):
        prune_state_dict(state, 0.5, mode='nope')


def test_light_head_exits_are_refused():
    net = MultiExitSRResNet(num_feat=4, num_block=2, exits=[1], exit_head='light')
    with pytest.raises(ValueError, match='MSRResNet-shaped'):
        prune_state_dict(net.exit_state_dict(1), 0.5)


def _prune_plan(tmp_path):
    path = _plan(tmp_path, budgets=('iterations', ))
    plan = yaml.safe_load(open(path))
    plan.pop('comparisons')  # test_ablate.py's pairs name runs this plan replaces
    finetune = {'pixel_opt': {'type': 'SelfDistillationLoss', 'teacher': 'external'}}
    plan['runs'] = {
        'sd': {'network_g': {'num_feat': 8}},
        'p0': {'init_from': {'run': 'sd', 'depth': 2, 'prune': 0}, 'teacher_from': 'sd', 'train': finetune},
        'p50': {'init_from': {'run': 'sd', 'depth': 2, 'prune': 0.5}, 'teacher_from': 'sd', 'train': finetune},
        'g50': {'init_from': {'run': 'sd', 'depth': 2, 'prune': 0.5, 'mode': 'global', 'round_to': 2},
                'teacher_from': 'sd',
                'train': finetune},
    }
    yaml.safe_dump(plan, open(path, 'w'), sort_keys=False)
    return path


def test_plan_knows_the_pruned_network_and_counts_the_source_once(tmp_path):
    path = _prune_plan(tmp_path)
    jobs = {j['name']: j for j in expand(load_plan(path))}
    p50, sd = jobs['p50__s0__iterations'], jobs['sd__s0__iterations']
    assert p50['opt']['network_g'] == dict(type='PrunedMSRResNet', num_in_ch=3, num_out_ch=3, num_feat=4, num_block=2,
                                           upscale=4, block_feat=[4, 4], up_feat=[4, 4], hr_feat=4)
    assert p50['deps'] == ['sd__s0__iterations']
    assert p50['total_macs'] == p50['own_macs'] + sd['total_macs']
    plan = yaml.safe_load(open(path))
    bad = copy.deepcopy(plan)
    bad['runs']['p50']['init_from']['prune'] = 1.5
    yaml.safe_dump(bad, open(tmp_path / 'bad.yml', 'w'))
    with pytest.raises(UserError, match=r'runs.p50.init_from.prune must be a pruning ratio in \[0, 1\), got 1.5'):
        expand(load_plan(str(tmp_path / 'bad.yml')))
    bad['runs']['p50']['init_from'].update(prune=0.5, depth=3)
    yaml.safe_dump(bad, open(tmp_path / 'bad.yml', 'w'))
    with pytest.raises(UserError, match=r"runs.p50.init_from.depth must be an output of run 'sd' \(\[2, 4\]\)"):
        expand(load_plan(str(tmp_path / 'bad.yml')))


def test_pruned_runs_train_from_the_pruned_exit_with_the_deep_teacher(tmp_path):
    out = str(tmp_path / 'out')
    assert ablate_main(['-opt', _prune_plan(tmp_path), '--out', out]) == 0
    results = {n[:-5]: json.load(open(osp.join(out, 'results', n))) for n in os.listdir(osp.join(out, 'results'))}
    assert set(results) == {'sd__s0__iterations', 'p0__s0__iterations', 'p50__s0__iterations', 'g50__s0__iterations'}
    p50 = results['p50__s0__iterations']
    assert p50['output'] == 'e2' and p50['last']['Test']['psnr'] > 20
    opt = yaml.safe_load(open(osp.join(out, 'options', 'p50__s0__iterations.yml')))
    assert opt['network_g']['type'] == 'PrunedMSRResNet' and opt['network_g']['num_feat'] == 4
    assert opt['path']['pretrain_network_t'].endswith('sd__s0__iterations/models/net_g_latest.pth')
    init = opt['path']['pretrain_network_g']
    assert init.endswith('p50__s0__iterations_init_e2_p50.pth')
    # the starting weights are exit 2 of the trained source, pruned: p0 is that exit exactly
    source, _ = load_checkpoint(osp.join(out, 'experiments', 'sd__s0__iterations', 'models', 'net_g_latest.pth'))
    start, start_opt = load_checkpoint(osp.join(out, 'options', 'p0__s0__iterations_init_e2_p0.pth'))
    x = torch.rand(1, 3, 12, 12)
    with torch.no_grad():
        assert (start(x) - source(x, exit=2)).abs().max() < 1e-6
    log = open(osp.join(out, 'logs', 'p50__s0__iterations.log')).read()
    assert 'l_distill_e2' in log  # distilled from the external (deep) teacher
    # a uniform pruning of an MSRResNet is a narrower MSRResNet; a global one has its own widths, read from its file
    tuned, tuned_opt = load_checkpoint(osp.join(out, 'experiments', 'p50__s0__iterations', 'models',
                                                'net_g_latest.pth'))
    assert tuned_opt['type'] == 'MultiExitSRResNet' and tuned_opt['num_feat'] == 4 and tuned.depths == (2, )
    g50_opt = yaml.safe_load(open(osp.join(out, 'options', 'g50__s0__iterations.yml')))['network_g']
    tuned, tuned_opt = load_checkpoint(osp.join(out, 'experiments', 'g50__s0__iterations', 'models',
                                                'net_g_latest.pth'))
    assert tuned_opt == g50_opt and tuned_opt['type'] == 'PrunedMSRResNet' and tuned.depths == (2, )
    assert macs_per_lr_pixel(tuned_opt) <= macs_per_lr_pixel(opt['network_g'])

    # the report: every network, INT8 evaluated image by image, latency per runtime, tables and figures
    report_dir = str(tmp_path / 'report')
    assert prune_main(['report', '-opt', _prune_plan_path(tmp_path), '--out', out, '--report-dir', report_dir,
                       '--runtimes', 'eager', 'onnxruntime', 'onnxruntime-int8', '--repeats', '2',
                       '--lr-size', '12', '16']) == 0
    report = json.load(open(osp.join(report_dir, 'report.json')))
    rows = {r['label']: r for r in report['rows']}
    assert len(rows) == 5  # the source's exit 2 and final output, p0, p50, g50
    p0 = next(r for r in report['rows'] if r['run'] == 'p0')
    assert p0['diff_vs_reference']['Test']['mean'] == 0
    for r in report['rows']:
        assert abs(r['int8']['psnr']['Test'] - r['psnr']['Test']) < 1.0  # INT8 of a working network still works
        assert set(r['int8']['per_image']['Test']) == {'img00', 'img01'}
        assert r['latency']['onnxruntime']['n'] == 2 and r['latency']['eager']['median_ms'] > 0
    assert next(r for r in report['rows'] if r['run'] == 'p50')['macs'] < p0['macs']
    md = open(osp.join(report_dir, 'report.md')).read()
    assert '### Paired per-image difference against `p0`' in md and '### Latency per runtime (ms)' in md
    assert osp.getsize(osp.join(report_dir, 'tradeoff_Test.png')) > 10000
    # redrawn from report.json alone, without measuring again
    os.remove(osp.join(report_dir, 'report.md'))
    assert prune_main(['report', '-opt', _prune_plan_path(tmp_path), '--out', out, '--report-dir', report_dir,
                       '--render-only']) == 0
    assert open(osp.join(report_dir, 'report.md')).read() == md


def _prune_plan_path(tmp_path):
    return str(tmp_path / 'plan.yml')


def test_prune_cli_writes_a_network_every_tool_reads(tmp_path, capsys):
    torch.manual_seed(0)
    multi = MultiExitSRResNet(num_feat=8, num_block=3, exits=[2])
    ckpt = str(tmp_path / 'multi.pth')
    torch.save({'params': multi.state_dict()}, ckpt)
    out = str(tmp_path / 'e2_g50.pth')
    with pytest.raises(SystemExit) as exc:
        prune_main(['prune', '--ckpt', ckpt, '--ratio', '0.5'])  # --out is required
    assert exc.value.code == 2 and '--out' in capsys.readouterr().err
    assert prune_main(['prune', '--ckpt', ckpt, '--ratio', '0.5', '--out', out]) == 2
    assert 'has outputs [2, 3]: choose the one to prune with --exit' in capsys.readouterr().err
    assert prune_main(['prune', '--ckpt', ckpt, '--exit', '2', '--ratio', '1.2', '--out', out]) == 2
    assert '--ratio must lie in [0, 1), got 1.2' in capsys.readouterr().err
    assert prune_main(['prune', '--ckpt', ckpt, '--exit', '2', '--ratio', '0.5', '--mode', 'global',
                       '--round-to', '2', '--out', out]) == 0
    assert 'GMACs' in capsys.readouterr().out
    stamp = os.path.getmtime(out)
    assert prune_main(['prune', '--ckpt', ckpt, '--exit', '2', '--ratio', '0.5', '--out', out]) == 2
    assert 'exists; pass --overwrite' in capsys.readouterr().err and os.path.getmtime(out) == stamp
    net, opt = load_checkpoint(out)
    assert opt['type'] in ('PrunedMSRResNet', 'MultiExitSRResNet') and net.depths == (2, )
    assert sum(p.numel() for p in net.parameters()) < multi.exit_parameters(2)
    # every format is written and verified against the pruned network (the exporter's tolerances)
    sidecars = export(out, ('pth', 'safetensors', 'onnx', 'torchscript', 'openvino', 'ncnn'), str(tmp_path / 'ex'),
                      int8=True)
    assert {s['format'] for s in sidecars} == {'pth', 'safetensors', 'onnx', 'torchscript', 'openvino', 'ncnn',
                                               'onnx-int8'}
    assert all(s['max_abs_diff'] <= s['tolerance'] for s in sidecars if 'tolerance' in s)
    exported, _ = load_checkpoint(str(tmp_path / 'ex' / 'e2_g50_e2_x4.pth'))
    x = torch.rand(1, 3, 10, 10)
    with torch.no_grad():
        assert torch.equal(exported(x), net(x))
