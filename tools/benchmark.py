"""Speed benchmark (training throughput and fast settings, per-exit latency, GFLOP/s, data wait, precision of the fast
settings): ``python tools/benchmark.py -h``."""
import sys
from os import path as osp

import srdistill  # noqa: F401  (applies BasicSR fixes, registers srdistill's components)
from srdistill.benchmark.cli import main

if __name__ == '__main__':
    sys.exit(main(root=osp.dirname(osp.dirname(osp.abspath(__file__)))))
