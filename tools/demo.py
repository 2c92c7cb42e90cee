"""The demo (``make demo``): self-distillation on scikit-image's bundled photos, ending with a per-exit table.

    python tools/demo.py [--force_yml train:total_iter=100 ...]   (extra arguments go to the training pipeline)
"""
import os
import sys
from os import path as osp

import srdistill  # noqa: F401  (applies BasicSR fixes, registers srdistill's components)
from srdistill.demo import run_demo
from srdistill.utils.errors import report_errors

ROOT = osp.abspath(osp.join(__file__, osp.pardir, osp.pardir))

if __name__ == '__main__':
    os.chdir(ROOT)  # the options' dataset paths are relative to the repository
    sys.exit(report_errors(run_demo, ROOT, sys.argv[1:]))
