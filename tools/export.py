"""Export exits as standalone models (pth, safetensors, ONNX, TorchScript): ``python tools/export.py -h``."""
import sys

import srdistill  # noqa: F401  (applies BasicSR fixes, registers srdistill's components)
from srdistill.export.export_cli import main

if __name__ == '__main__':
    sys.exit(main())
