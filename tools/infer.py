"""Super-resolve your images with an exported exit or a checkpoint: ``python tools/infer.py -h``."""
import sys

import srdistill  # noqa: F401  (applies BasicSR fixes, registers srdistill's components)
from srdistill.inference.infer_cli import main

if __name__ == '__main__':
    sys.exit(main())
