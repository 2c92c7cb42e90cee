"""``tools/evaluate.py``: the per-exit benchmark table of one or more checkpoints, with costs, a plot and a picture.

    python tools/evaluate.py --ckpt experiments/<name>/models/net_g_latest.pth --datasets Set5 Set14 BSD100 Urban100
    python tools/evaluate.py --ckpt sd32.pth srresnet8.pth --labels SD-32 SRResNet-8 --datasets Set5 Set14
    python tools/evaluate.py -opt options/test_x4.yml          (a BasicSR-style test options file)

Writes table.md, table.csv, results.json, tradeoff.png and comparison.png into --out and prints the table.
"""
import argparse
import sys
import time
from os import path as osp

import yaml

from srdistill.archs.checkpoints import experiment_label, load_checkpoint
from srdistill.archs.cost import MAC_OUTPUT_SIZE, exit_macs
from srdistill.benchmark.runtimes import network_key, runtime_latencies
from srdistill.data.image_files import UINT8, read_image
from srdistill.evaluation.exits import (
    dataset_pairs,
    default_device,
    evaluate,
    make_lpips,
    paired_files,
    super_resolve,
)
from srdistill.evaluation.figures import comparison_picture, plot_tradeoff
from srdistill.evaluation.report import PROTOCOL, markdown, write_reports
from srdistill.metrics.psnr_ssim_y_metric import bicubic_upsample
from srdistill.utils.errors import UserError, report_errors
from srdistill.utils.tiling import plan_overlap

LATENCY_WARMUP = 2  # untimed runs of each network before the timed rounds
REPO = osp.abspath(osp.join(osp.dirname(__file__), osp.pardir, osp.pardir))


def build_parser():
    p = argparse.ArgumentParser(prog='evaluate.py', description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--ckpt', nargs='+', help='checkpoints (net_g_*.pth, or plain BasicSR networks of a '
                   'registered architecture)')
    p.add_argument('--labels', nargs='+', help='a name per checkpoint (default: its experiment name)')
    p.add_argument('-opt', help='options file: its network_g is checked against the checkpoint; a test options file '
                   'also gives datasets and path.pretrain_network_g')
    p.add_argument('--datasets', nargs='+', help='prepared sets under --data-root, e.g. Set5 Set14 BSD100 Urban100')
    p.add_argument('--data-root', default=osp.join(REPO, 'datasets'), help='default: %(default)s')
    p.add_argument('--scale', type=int, help='default: the checkpoint\'s')
    p.add_argument('--exits', nargs='+', type=int, help='depths to report (default: every output)')
    p.add_argument('--param-key', default='params', choices=['params', 'params_ema'])
    p.add_argument('--out', help='output folder (default: results/evaluate_<time>)')
    p.add_argument('--overwrite', action='store_true', help='write into an --out that already holds results')
    p.add_argument('--device', default='auto', choices=['auto', 'cpu', 'cuda'])
    p.add_argument('--tile', type=int, help='LR tile size for large images (bounded memory)')
    p.add_argument('--tile-overlap', type=int, default=None,
                   help='LR pixels shared by neighbouring tiles (default: twice the receptive-field radius of the '
                   'deepest network, which makes tiled and untiled results equal)')
    p.add_argument('--self-ensemble', action='store_true', help='x8 geometric self-ensemble')
    p.add_argument('--rgb', action='store_true', help='also PSNR on RGB')
    p.add_argument('--lpips', action='store_true', help='also LPIPS (AlexNet; needs its weights)')
    p.add_argument('--save-images', action='store_true', help='write every SR image under --out/images')
    p.add_argument('--no-latency', action='store_true', help='skip the latency measurement')
    p.add_argument('--latency-repeats', type=int, default=5,
                   help='timed rounds; each runs every distinct network once, interleaved (default: 5)')
    p.add_argument('--mac-size', nargs=2, type=int, default=list(MAC_OUTPUT_SIZE), metavar=('H', 'W'),
                   help='output size for MACs and latency (default: 720 1280)')
    p.add_argument('--picture-images', type=int, default=3, help='test images in comparison.png (default: 3)')
    return p


def _datasets(args, opt, scale):
    if args.datasets:
        return [(name, dataset_pairs(name, args.data_root, scale)) for name in args.datasets]
    sets = [d for phase, d in (opt or {}).get('datasets', {}).items() if not phase.startswith('train')]
    if not sets:
        raise UserError('no test data: pass --datasets (e.g. --datasets Set5 Set14) or an options file with '
                        'datasets.test_1.dataroot_gt/dataroot_lq.')
    return [(d.get('name', f'set{i}'), paired_files(d['dataroot_gt'], d['dataroot_lq'])) for i, d in enumerate(sets)]


def _load_models(args, opt, device):
    ckpts = args.ckpt or ([opt['path']['pretrain_network_g']] if (opt or {}).get('path', {}).get(
        'pretrain_network_g') else [])
    if not ckpts:
        raise UserError('no checkpoint: pass --ckpt, or an options file with path.pretrain_network_g.')
    if args.labels and len(args.labels) != len(ckpts):
        raise UserError(f'--labels gives {len(args.labels)} names for {len(ckpts)} checkpoints.')
    labels = args.labels or [experiment_label(c) for c in ckpts]
    labels = [f'{lab} ({i + 1})' if labels.count(lab) > 1 else lab for i, lab in enumerate(labels)]
    opt_path = args.opt if (opt or {}).get('network_g') else None
    models = [(lab, *load_checkpoint(c, opt_path if len(ckpts) == 1 else None, args.param_key, args.scale, device))
              for lab, c in zip(labels, ckpts)]
    scales = {net.upscale for _, net, _ in models}
    if len(scales) > 1:
        raise UserError(f'the checkpoints have different scales ({sorted(scales)}); evaluate one scale at a time.')
    return models


def _depths(models, wanted):
    available = sorted({d for _, net, _ in models for d in net.depths})
    if wanted:
        unknown = [d for d in wanted if d not in available]
        if unknown:
            raise UserError(f'--exits {unknown}: no such output; the checkpoint(s) have {available}.')
    return {label: [d for d in net.depths if not wanted or d in wanted] for label, net, _ in models}


def _latencies(models, depths, lr_size, device, repeats, warmup=LATENCY_WARMUP):
    """``{(label, depth): spread}`` of every output's standalone network, PyTorch eager on ``device``.

    Each distinct network (the same architecture options and weights, :func:`~srdistill.benchmark.runtimes.network_key`:
    e.g. one checkpoint passed twice) is timed once, and all of them interleaved
    (:func:`~srdistill.benchmark.runtimes.runtime_latencies`): timed one after another, a slow spell of the machine
    during one of them would show as a difference between two networks (docs/export_runtimes.md).
    """
    networks, keys = {}, {}
    for label, net, _ in models:
        for d in depths[label]:
            sub = net.exit_network(d)
            key = network_key(sub, net.exit_network_opt(d))
            networks.setdefault(key, sub)
            keys[(label, d)] = key
    timed = runtime_latencies(networks, lr_size, runtimes=('eager', ), warmup=warmup, repeats=repeats, device=device)
    return {output: timed[key]['eager'] for output, key in keys.items()}


def run(args):
    """Carry out one evaluation (see the module docstring). Raises UserError on bad input."""
    device = default_device() if args.device == 'auto' else args.device
    opt = None
    if args.opt:
        if not osp.isfile(args.opt):
            raise UserError(f'options file {args.opt} does not exist.')
        with open(args.opt) as f:
            opt = yaml.safe_load(f) or {}
    models = _load_models(args, opt, device)
    scale = models[0][1].upscale
    # every output comes from one pass of the whole network: the deepest one sets the overlap
    overlap, note = plan_overlap(args.tile, args.tile_overlap, max(n.receptive_radius() for _, n, _ in models))
    if note:
        print(f'srdistill: note: {note}', file=sys.stderr)
    datasets = _datasets(args, opt, scale)
    depths = _depths(models, args.exits)
    out = args.out or osp.join(REPO, 'results', f'evaluate_{time.strftime("%Y%m%d_%H%M%S")}')
    if osp.exists(osp.join(out, 'results.json')) and not args.overwrite:
        raise UserError(f'{out} already holds results; choose another --out or pass --overwrite.')
    lpips_fn = None
    if args.lpips:
        lpips_fn, message = make_lpips(device)
        if message:
            print(message, file=sys.stderr)

    rows = {('bicubic', out): dict(model='bicubic', output=out, depth=None, params=None, macs=None, latency_ms=None,
                                   latency_q1_ms=None, latency_q3_ms=None) for out in ('bicubic_srcnn', 'bicubic')}
    per_image = {}
    out_h, out_w = args.mac_size
    latencies = {} if args.no_latency else _latencies(models, depths, (out_h // scale, out_w // scale), device,
                                                      args.latency_repeats)
    for label, net, _ in models:
        for d in depths[label]:
            timed = latencies.get((label, d), {})
            rows[(label, f'e{d}')] = dict(model=label, output=f'e{d}', depth=d, params=net.exit_parameters(d),
                                          macs=exit_macs(net, d, (out_h, out_w)), latency_ms=timed.get('median_ms'),
                                          latency_q1_ms=timed.get('q1_ms'), latency_q3_ms=timed.get('q3_ms'))
    metrics = ('psnr', 'ssim') + (('psnr_rgb', ) if args.rgb else ()) + (('lpips', ) if lpips_fn else ())
    for name, pairs in datasets:
        for i, (label, net, _) in enumerate(models):
            save_dir = osp.join(out, 'images', label, name) if args.save_images else None
            means, images = evaluate(net, pairs, scale, device, tile=args.tile, overlap=overlap,
                                     ensemble=args.self_ensemble,
                                     rgb=args.rgb, lpips_fn=lpips_fn, save_dir=save_dir, bicubic=i == 0,
                                     desc=f'{label} on {name}')
            per_image.setdefault(label, {})[name] = images
            for output, values in means.items():
                key = ('bicubic', output) if output.startswith('bicubic') else (label, output)
                if key in rows:
                    rows[key].update({f'{name}/{m}': v for m, v in values.items()})
    rows = list(rows.values())
    names = [name for name, _ in datasets]
    protocol = PROTOCOL.format(out_w=out_w, out_h=out_h, lr_w=out_w // scale, lr_h=out_h // scale,
                               warmup=LATENCY_WARMUP, repeats=args.latency_repeats, device=device)
    protocol += ' Outputs x8 self-ensembled.' if args.self_ensemble else ''
    paths = write_reports(rows, names, out, protocol, per_image, metrics)
    paths['plot'] = plot_tradeoff(rows, names[0], osp.join(out, 'tradeoff.png'))
    paths['picture'] = _picture(models, depths, datasets[0], scale, per_image, args, device,
                                osp.join(out, 'comparison.png'), overlap)
    print(markdown(rows, names, metrics))
    print(f'\nProtocol: {protocol}\n')
    for kind, path in paths.items():
        print(f'{kind}: {path}')
    return rows


def _picture(models, depths, dataset, scale, per_image, args, device, path, overlap):
    name, pairs = dataset
    panels = []
    for gt_path, lq_path in pairs[:args.picture_images]:
        image = osp.splitext(osp.basename(lq_path))[0]
        gt, lq = read_image(gt_path, UINT8), read_image(lq_path, UINT8)
        scores = dict(next(s for n, s in per_image[models[0][0]][name] if n == image))
        columns = [('bicubic', bicubic_upsample(lq, scale), scores['bicubic']['psnr'])]
        for label, net, _ in models:
            scores = dict(next(s for n, s in per_image[label][name] if n == image))
            outputs = super_resolve(net, lq, device, tile=args.tile, overlap=overlap)
            title = (lambda d: f'e{d}') if len(models) == 1 else (lambda d: f'{label} e{d}')
            columns += [(title(d), outputs[f'e{d}'], scores[f'e{d}']['psnr']) for d in depths[label]]
        panels.append((image, gt[:columns[0][1].shape[0], :columns[0][1].shape[1]], columns))
    return comparison_picture(panels, path)


def main(argv=None):
    """Entry point; returns the exit status (2 on bad input, with one message and no traceback)."""
    return report_errors(run, build_parser().parse_args(argv))
