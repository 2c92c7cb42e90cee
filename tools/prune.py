"""Channel-prune exits and report a pruning experiment: ``python tools/prune.py -h``."""
import sys

import srdistill  # noqa: F401  (applies BasicSR fixes, registers srdistill's components)
from srdistill.pruning.prune_cli import main

if __name__ == '__main__':
    sys.exit(main())
