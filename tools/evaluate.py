"""Per-exit benchmark table of checkpoints, with costs, a plot and a picture: ``python tools/evaluate.py -h``."""
import sys

import srdistill  # noqa: F401  (applies BasicSR fixes, registers srdistill's components)
from srdistill.evaluation.evaluate_cli import main

if __name__ == '__main__':
    sys.exit(main())
