"""``tools/prune.py``: channel-prune an exit (``prune``), and report a pruning experiment's curves (``report``).

    python tools/prune.py prune --ckpt experiments/<name>/models/net_g_latest.pth --exit 8 --ratio 0.5 \\
        --out exports/e8_p50.pth [--mode global] [--round-to 4]
    python tools/prune.py report -opt options/prune_cpu.yml --out docs/pruning/prune_cpu_x4 --report-dir docs/pruning

``prune`` writes a BasicSR checkpoint (``{'params': ..., 'network': ...}``) that tools/evaluate.py, tools/export.py
(every format) and tools/infer.py read like any exit; fine-tune it with distillation from the deep output through an
ablation plan (``init_from: {run: ..., depth: 8, prune: 0.5}`` with ``teacher_from``: docs/pruning.md), which also
prunes for you. ``report`` needs that plan run to the end.
"""
import argparse
import os
import tempfile
from os import path as osp

import torch

from srdistill.archs.checkpoints import choose_weights, network_from_state_dict, read_checkpoint, stored_network_opt
from srdistill.archs.cost import MAC_OUTPUT_SIZE, exit_macs
from srdistill.benchmark.runtimes import RUNTIMES
from srdistill.pruning.channel_pruning import MODES, prune_state_dict
from srdistill.pruning.report import LATENCY_RUNTIMES
from srdistill.utils.errors import UserError, report_errors


def build_parser():
    p = argparse.ArgumentParser(prog='prune.py', description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest='command', required=True)
    one = sub.add_parser('prune', help='prune one exit of a checkpoint (or an exported exit)')
    one.add_argument('--ckpt', required=True, help='multi-exit checkpoint, plain BasicSR MSRResNet, or exported exit')
    one.add_argument('--exit', type=int, default=None,
                     help='depth of the exit to prune (default: the only output of an exported exit)')
    one.add_argument('--ratio', type=float, required=True, help='share of channels removed, in [0, 1), e.g. 0.5')
    one.add_argument('--mode', choices=MODES, default='uniform',
                     help='uniform: the same share of every layer group; global: the same multiply-adds, placed by '
                     'score per multiply-add (default: uniform)')
    one.add_argument('--round-to', type=int, default=4, help='kept channels are a multiple of this (default: 4)')
    one.add_argument('--param-key', default='params', choices=['params', 'params_ema'])
    one.add_argument('--out', required=True, help='output .pth (refused when it exists, unless --overwrite)')
    one.add_argument('--overwrite', action='store_true')
    rep = sub.add_parser('report', help="a finished pruning plan's PSNR-vs-MACs/latency curves, fp32 and INT8")
    rep.add_argument('-opt', required=True, help='the ablation plan with pruned runs, e.g. options/prune_cpu.yml')
    rep.add_argument('--out', required=True, help="the plan's output folder (tools/ablate.py --out)")
    rep.add_argument('--report-dir', required=True, help='where report.md/json and the figures go')
    rep.add_argument('--reference', default='p0', help='run the differences are taken against (default: p0)')
    rep.add_argument('--plot-sets', nargs='+', default=None, help="sets drawn (default: every evaluated set)")
    rep.add_argument('--lr-size', nargs=2, type=int, default=[180, 320], metavar=('H', 'W'))
    rep.add_argument('--repeats', type=int, default=5, help='interleaved timing rounds (default: 5)')
    rep.add_argument('--render-only', action='store_true',
                     help="redraw report.md and the figures from --report-dir's report.json (no measurement)")
    rep.add_argument('--runtimes', nargs='+', default=list(LATENCY_RUNTIMES), choices=RUNTIMES,
                     help='runtimes timed (default: %(default)s); onnxruntime-int8 also gives the INT8 PSNR')
    return p


def prune_file(args):
    if not 0 <= args.ratio < 1:
        raise UserError(f'--ratio must lie in [0, 1), got {args.ratio}.')
    if args.round_to < 1:
        raise UserError(f'--round-to must be a positive integer, got {args.round_to}.')
    if not args.out.endswith('.pth'):
        raise UserError(f'--out {args.out}: the pruned network is written as a .pth checkpoint; name it *.pth.')
    if osp.exists(args.out) and not args.overwrite:
        raise UserError(f'{args.out} exists; pass --overwrite to replace it, or choose another --out.')
    states, stored = read_checkpoint(args.ckpt)
    net, _ = network_from_state_dict(choose_weights(states, args.param_key), args.ckpt,
                                     extra=stored_network_opt(args.ckpt, stored))
    depth = args.exit if args.exit is not None else net.depths[-1]
    if args.exit is None and len(net.depths) > 1:
        raise UserError(f'{args.ckpt} has outputs {list(net.depths)}: choose the one to prune with --exit.')
    if depth not in net.depths:
        raise UserError(f'--exit {depth}: {args.ckpt} has no such output; it has {list(net.depths)}.')
    try:
        network, state, _ = prune_state_dict(net.exit_state_dict(depth), args.ratio, args.round_to, args.mode)
    except ValueError as err:
        raise UserError(f'{args.ckpt}, exit {depth}: {err}') from None
    pruned, _ = network_from_state_dict(state, args.out, extra=network)
    folder = osp.dirname(osp.abspath(args.out))
    os.makedirs(folder, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=folder, suffix='.part', delete=False) as tmp:
        torch.save({'params': state, 'network': network}, tmp.name)
    os.replace(tmp.name, args.out)  # never a half-written file under the final name
    before, after = exit_macs(net, depth), exit_macs(pruned, pruned.depths[-1])
    h, w = MAC_OUTPUT_SIZE
    print(f'{args.out}: exit {depth} pruned at {args.ratio:g} ({args.mode}): '
          f'{net.exit_parameters(depth):,} -> {sum(p.numel() for p in pruned.parameters()):,} params, '
          f'{before / 1e9:.2f} -> {after / 1e9:.2f} GMACs ({w}x{h} output)')
    print('widths:', {k: v for k, v in network.items() if k.endswith('feat')})
    return 0


def report(args):
    from srdistill.pruning.render import write_report
    from srdistill.pruning.report import build_report
    if args.render_only:
        path = osp.join(args.report_dir, 'report.json')
        if not osp.isfile(path):
            raise UserError(f'--render-only: {path} does not exist; run the report without --render-only first.')
        import json
        with open(path) as f:
            result = json.load(f)
        for path in write_report(result, args.report_dir, args.plot_sets or result['datasets']):
            print('written:', path)
        return 0
    if 'onnxruntime-int8' not in args.runtimes:
        print('srdistill: note: without onnxruntime-int8 in --runtimes the report has no INT8 rows.')
    result = build_report(args.opt, args.out, args.reference, tuple(args.lr_size), tuple(args.runtimes),
                          repeats=args.repeats)
    for path in write_report(result, args.report_dir, args.plot_sets or result['datasets']):
        print('written:', path)
    return 0


def run(argv=None):
    args = build_parser().parse_args(argv)
    return prune_file(args) if args.command == 'prune' else report(args)


def main(argv=None):
    return report_errors(run, argv)
