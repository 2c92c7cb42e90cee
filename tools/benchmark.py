"""Speed benchmark (training throughput, per-exit latency, GFLOP/s): ``python tools/benchmark.py -h``."""
import argparse
import sys

import srdistill  # noqa: F401  (applies BasicSR fixes, registers srdistill's components)
from srdistill.benchmark.run import markdown, run_benchmark, write_report


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument('--num-feat', type=int, default=64)
    p.add_argument('--num-block', type=int, default=32)
    p.add_argument('--exit', type=int, default=8)
    p.add_argument('--batch', type=int, default=16)
    p.add_argument('--gt-size', type=int, default=96)
    p.add_argument('--lr-size', nargs=2, type=int, default=[180, 320], metavar=('H', 'W'))
    p.add_argument('--warmup', type=int, default=2)
    p.add_argument('--repeats', type=int, default=5)
    p.add_argument('--no-compile', action='store_true', help='skip torch.compile')
    p.add_argument('--device', default=None, help='default: cuda when present, else cpu')
    p.add_argument('--out', default=None, help='report path (.md; a .json is written beside it)')
    args = p.parse_args(argv)
    report = run_benchmark(args.num_feat, args.num_block, args.exit, 4, args.batch, args.gt_size, tuple(args.lr_size),
                           args.device, args.warmup, args.repeats, not args.no_compile)
    print(markdown(report))
    if args.out:
        print('written:', *write_report(report, args.out))
    return 0


if __name__ == '__main__':
    sys.exit(main())
