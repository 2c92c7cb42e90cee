"""Hyper-parameter search on a validation split (Optuna, resumable): ``python tools/tune.py -h``."""
import sys

import srdistill  # noqa: F401  (applies BasicSR fixes, registers srdistill's components)
from srdistill.tuning.tune_cli import main
from srdistill.utils.errors import report_errors

if __name__ == '__main__':
    sys.exit(report_errors(main))
