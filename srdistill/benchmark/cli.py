"""``tools/benchmark.py``: training throughput (with the fast settings), per-exit latency, the exit's and the final
network's latency in each runtime (PyTorch eager and channels_last, ONNX Runtime fp32 and INT8, OpenVINO, ncnn: timed
interleaved), GFLOP/s; optionally the data wait of real training iterations (``--data-opt``) and the PSNR of trained
weights under each fast setting (``--ckpt`` with ``--val-dir``).

Examples::

    python tools/benchmark.py --out results/benchmark.md
    python tools/benchmark.py --skip-training --no-compile --out results/runtimes.md     (inference only: minutes)
    python tools/benchmark.py --data-opt options/sd_x4_291.yml options/sd_x4_291_png.yml --data-iters 50 \\
        --ckpt experiments/SD_SRResNet32e8_x4_291_B16/models/net_g_latest.pth --val-dir datasets/Set5
"""
import argparse

from srdistill.archs.multi_exit import EXIT_HEADS, multi_exit_archs
from srdistill.benchmark.report import markdown, write_report
from srdistill.benchmark.run import run_benchmark
from srdistill.benchmark.runtimes import RUNTIMES
from srdistill.utils.amp import NAMES as AMP_NAMES
from srdistill.utils.errors import report_errors


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--arch', default='MultiExitSRResNet', choices=sorted(multi_exit_archs()),
                   help='the multi-exit architecture (default: MultiExitSRResNet)')
    p.add_argument('--exit-head', default='full', choices=EXIT_HEADS,
                   help="the exit's head: full (the network's own tail, default) or light (docs/architecture.md)")
    p.add_argument('--num-feat', type=int, default=64)
    p.add_argument('--num-block', type=int, default=32)
    p.add_argument('--exit', type=int, default=8, help='depth of the measured exit, below --num-block (default: 8)')
    p.add_argument('--batch', type=int, default=16)
    p.add_argument('--gt-size', type=int, default=96)
    p.add_argument('--lr-size', nargs=2, type=int, default=[180, 320], metavar=('H', 'W'))
    p.add_argument('--warmup', type=int, default=2)
    p.add_argument('--repeats', type=int, default=5)
    p.add_argument('--no-compile', action='store_true', help='skip torch.compile')
    p.add_argument('--skip-training', action='store_true',
                   help='measure inference only (the per-exit and per-runtime latency): no training rows')
    p.add_argument('--runtimes', nargs='*', default=list(RUNTIMES), choices=RUNTIMES, metavar='RUNTIME',
                   help=f"runtimes of the per-runtime table, on the CPU (default: all: {' '.join(RUNTIMES)}; none: "
                   'no table); a runtime whose package is missing is listed as skipped')
    p.add_argument('--device', default=None, help='default: cuda when present, else cpu')
    p.add_argument('--out', default=None, help='report path (.md; a .json is written beside it)')
    data = p.add_argument_group('data wait of real training iterations (skipped without --data-opt)')
    data.add_argument('--data-opt', nargs='+', default=None, metavar='PATH',
                      help='training options file(s), e.g. options/sd_x4_291.yml; each is measured; relative data '
                      'paths are taken relative to the project root (tools/benchmark.py: the repository)')
    data.add_argument('--data-iters', type=int, default=50, metavar='N', help='timed iterations (default: 50)')
    data.add_argument('--num-worker', type=int, default=None, metavar='N',
                      help="override the file's datasets.train.num_worker_per_gpu")
    data.add_argument('--data-amp', choices=AMP_NAMES, default=None,
                      help="override the file's train.amp (CUDA only)")
    data.add_argument('--data-channels-last', action=argparse.BooleanOptionalAction, default=None,
                      help="override the file's train.channels_last")
    prec = p.add_argument_group('precision of the fast settings on trained weights (skipped without --ckpt)')
    prec.add_argument('--ckpt', default=None, metavar='PATH', help='a training checkpoint (net_g_*.pth)')
    prec.add_argument('--val-dir', default=None, metavar='DIR',
                      help='a benchmark folder with HR/ and LR_bicubic/X<scale>/, e.g. datasets/Set5')
    prec.add_argument('--param-key', default='params', choices=['params', 'params_ema'],
                      help='which weights of the checkpoint (default: params)')
    return p


def benchmark(argv=None, root=None):
    p = build_parser()
    args = p.parse_args(argv)
    if not 1 <= args.exit < args.num_block:
        p.error(f'--exit must lie in [1, --num-block - 1] = [1, {args.num_block - 1}], got {args.exit}')
    if args.ckpt is not None and args.val_dir is None:
        p.error('--ckpt needs --val-dir (a folder with HR/ and LR_bicubic/X<scale>/, e.g. datasets/Set5)')
    if args.val_dir is not None and args.ckpt is None:
        p.error('--val-dir needs --ckpt')
    if args.skip_training and args.data_opt:
        p.error('--data-opt measures training iterations: not with --skip-training')
    report = run_benchmark(args.num_feat, args.num_block, args.exit, 4, args.batch, args.gt_size, tuple(args.lr_size),
                           args.device, args.warmup, args.repeats, not args.no_compile, data_opt=args.data_opt,
                           data_iters=args.data_iters, num_worker=args.num_worker, data_amp=args.data_amp,
                           data_channels_last=args.data_channels_last, ckpt=args.ckpt, val_dir=args.val_dir,
                           param_key=args.param_key, root=root, arch=args.arch,
                           exit_head=args.exit_head, skip_training=args.skip_training,
                           runtimes=tuple(dict.fromkeys(args.runtimes)))
    print(markdown(report))
    if args.out:
        print('written:', *write_report(report, args.out))
    return 0


def main(argv=None, root=None):
    """Run the benchmark, printing a :class:`~srdistill.utils.errors.UserError` as one line.

    Args:
        argv (list[str] | None): Arguments. Default: ``sys.argv[1:]``.
        root (str | None): Project root for the relative paths inside ``--data-opt``. Default: the current directory.

    Returns:
        int: The exit status.
    """
    return report_errors(benchmark, argv, root)
