"""Ablation runner (baselines, distillation methods, seeds, equal iterations/compute): ``python tools/ablate.py -h``."""
import sys

import srdistill  # noqa: F401  (applies BasicSR fixes, registers srdistill's components)
from srdistill.ablation.ablate_cli import main
from srdistill.utils.errors import report_errors

if __name__ == '__main__':
    sys.exit(report_errors(main))
