"""Prepare datasets (LR made exactly as MATLAB's bicubic imresize): ``python tools/prepare_data.py -h``."""
import sys

from srdistill.data.prepare_cli import main

if __name__ == '__main__':
    sys.exit(main())
