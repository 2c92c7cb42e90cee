"""Train a model: ``python tools/train.py -opt options/sd_x4.yml [--auto_resume] [--debug] [--launcher pytorch]``."""
from os import path as osp

import srdistill  # noqa: F401  (applies BasicSR fixes, registers srdistill's components)
from srdistill.train import main

if __name__ == '__main__':
    main(osp.abspath(osp.join(__file__, osp.pardir, osp.pardir)))
