"""Peak memory of ``tools/infer.py`` against image size, tiled and untiled.

    python -m srdistill.benchmark.infer_memory --out docs/infer_memory.md

Each case runs in a fresh process on one CPU thread: it builds the network (random weights, seed 0), makes a random
uint8 LR image, records its peak resident set size (``ru_maxrss``) as the baseline, super-resolves the image exactly as
``tools/infer.py`` does (:func:`~srdistill.inference.images.upscale_image`, the default overlap: exact tiles) and
records the peak again. The report (``.md`` and ``.json`` beside it) says the command that made it.
"""
import argparse
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import time
from os import path as osp

DEFAULT_SIZES = ('500x375', '1000x750', '2000x1500')
# untiled memory grows with the pixels (1.7 GB above the baseline at 500x375 on 64 channels): 1000x750 would need
# about 7 GB, 2000x1500 about 27 GB
DEFAULT_UNTILED = ('250x188', '500x375')


def _mb(n_bytes):
    return n_bytes / 2**20


def _peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def measure_case(num_feat, num_block, scale, size, tile, arch='MultiExitSRResNet'):
    """One case, in this process (the caller's child): peak RSS before and after super-resolving one image.

    Args:
        num_feat (int): Network channels.
        num_block (int): Residual blocks.
        scale (int): Upscaling factor.
        size (str): LR size, ``WxH``.
        tile (int | None): ``--tile``; None: untiled.
        arch (str): A registered multi-exit architecture. Default: ``'MultiExitSRResNet'``.

    Returns:
        dict: The case and its measurements (MB are MiB).
    """
    import numpy as np
    import torch

    from srdistill.archs.multi_exit import build_network
    from srdistill.inference.images import upscale_image
    from srdistill.inference.runners import TorchRunner
    from srdistill.utils.tiling import plan_overlap, tile_windows

    torch.set_num_threads(1)
    torch.manual_seed(0)
    net = build_network(dict(type=arch, num_feat=num_feat, num_block=num_block, upscale=scale))
    runner = TorchRunner(net, scale, 'cpu')
    overlap, _ = plan_overlap(tile, None, runner.radius)
    w, h = (int(v) for v in size.split('x'))
    img = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    baseline = _peak_rss_mb()
    start = time.perf_counter()
    out = upscale_image(runner, img, tile, overlap)
    seconds = time.perf_counter() - start
    peak = _peak_rss_mb()
    return dict(lr_size=size, hr_size=f'{w * scale}x{h * scale}', tile=tile, overlap=overlap if tile else None,
                tiles=len(tile_windows(h, w, tile, overlap)), output_mb=_mb(out.nbytes), baseline_rss_mb=baseline,
                peak_rss_mb=peak, added_mb=peak - baseline, seconds=seconds)


def run_cases(num_feat, num_block, scale, sizes, untiled_sizes, tile, arch='MultiExitSRResNet'):
    """Every case in its own process (so that one's peak is not another's): the untiled sizes, then the tiled."""
    rows = []
    for size, case_tile in [(size, None) for size in untiled_sizes] + [(size, tile) for size in sizes]:
        args = [sys.executable, '-m', 'srdistill.benchmark.infer_memory', '--case', '--num-feat', str(num_feat),
                '--num-block', str(num_block), '--scale', str(scale), '--sizes', size, '--tile', str(case_tile or 0),
                '--arch', arch]
        result = subprocess.run(args, capture_output=True, text=True, env={**os.environ, 'OMP_NUM_THREADS': '1'})
        if result.returncode:
            raise RuntimeError(f'case {size} tile {case_tile} failed: {result.stderr[-2000:]}')
        rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
    return rows


def markdown(report):
    """The report as a markdown page."""
    net = report['network']
    lines = [
        '# Peak memory of tiled and untiled inference', '',
        f'Command: `{report["command"]}`', '',
        f'{net["name"]} (num_feat {net["num_feat"]}, x{net["scale"]}, random weights), `tools/infer.py`\'s code path '
        f'(`upscale_image`, default overlap = exact tiles), one CPU thread, each case in a fresh process; '
        f'torch {report["environment"]["torch"]}, {report["environment"]["machine"]}. Peak RSS is the process\'s '
        '`ru_maxrss`; the baseline is the same process before the image (Python, torch, the network).', '',
        '| LR input | SR output | uint8 output (MB) | tile (overlap), tiles | peak RSS (MB) | above baseline (MB) '
        '| time (s) |',
        '|---|---|---|---|---|---|---|',
    ]
    for r in report['rows']:
        tile = f'{r["tile"]} ({r["overlap"]}), {r["tiles"]} tiles' if r['tile'] else 'untiled'
        lines.append(f'| {r["lr_size"]} | {r["hr_size"]} | {r["output_mb"]:.1f} | {tile} | {r["peak_rss_mb"]:.0f} | '
                     f'{r["added_mb"]:.0f} | {r["seconds"]:.1f} |')
    return '\n'.join(lines) + '\n'


def _network_name(arch, num_block):
    """``SRResNet-8`` for ``MultiExitSRResNet`` with 8 blocks (the report's name), ``<arch>-<blocks>`` otherwise."""
    return f'{arch.removeprefix("MultiExit")}-{num_block}'


def build_parser():
    p = argparse.ArgumentParser(prog='python -m srdistill.benchmark.infer_memory', description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--arch', default='MultiExitSRResNet', help='a registered multi-exit architecture')
    p.add_argument('--num-feat', type=int, default=64)
    p.add_argument('--num-block', type=int, default=8)
    p.add_argument('--scale', type=int, default=4, choices=[2, 3, 4])
    p.add_argument('--sizes', nargs='+', default=list(DEFAULT_SIZES), metavar='WxH', help='LR sizes run tiled')
    p.add_argument('--untiled-sizes', nargs='*', default=list(DEFAULT_UNTILED), metavar='WxH',
                   help='LR sizes run untiled')
    p.add_argument('--tile', type=int, default=256, help='LR tile size of the tiled cases (default: 256)')
    p.add_argument('--out', default=None, help='report path (.md; a .json is written beside it)')
    p.add_argument('--case', action='store_true', help=argparse.SUPPRESS)  # a child: one case, JSON on stdout
    return p


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    if args.case:
        print(json.dumps(measure_case(args.num_feat, args.num_block, args.scale, args.sizes[0], args.tile or None,
                                      args.arch)))
        return 0
    import torch
    rows = run_cases(args.num_feat, args.num_block, args.scale, args.sizes, args.untiled_sizes, args.tile, args.arch)
    report = dict(command='python -m srdistill.benchmark.infer_memory ' + shlex.join(argv),
                  network=dict(name=_network_name(args.arch, args.num_block), num_feat=args.num_feat, scale=args.scale),
                  environment=dict(torch=torch.__version__, machine=platform.processor() or platform.machine(),
                                   threads=1),
                  rows=rows)
    text = markdown(report)
    print(text)
    if args.out:
        with open(args.out, 'w') as f:
            f.write(text)
        with open(osp.splitext(args.out)[0] + '.json', 'w') as f:
            json.dump(report, f, indent=1)
    return 0


if __name__ == '__main__':
    sys.exit(main())
