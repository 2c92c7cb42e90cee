"""The weight-inherit baseline: cut the first blocks (and the final tail) out of a trained deep network."""
from collections import OrderedDict

import torch

from srdistill.evaluation.checkpoints import read_state_dict
from srdistill.export.subnet import TAIL_PREFIXES


def cut_state_dict(state, depth):
    """``MSRResNet(num_block=depth)`` weights from a deeper (multi-exit) SRResNet: its first convolution, its first
    ``depth`` residual blocks and its *final* upsampling tail (exit tails and adapters are dropped).

    This is the "exit cut from a plain deep network" that is then fine-tuned: it inherits everything it can from the
    deep network, as a student that only inherits the teacher's first layers does in CSD's experiments.
    """
    out = OrderedDict()
    for name, value in state.items():
        if name.startswith('conv_first.') or name.startswith(TAIL_PREFIXES):
            out[name] = value
        elif name.startswith('body.') and int(name.split('.')[1]) < depth:
            out[name] = value
    return out


def write_cut(ckpt_path, depth, out_path):
    """Write the cut of ``ckpt_path`` at ``depth`` as a BasicSR checkpoint. Returns ``out_path``."""
    torch.save({'params': cut_state_dict(read_state_dict(ckpt_path), depth)}, out_path)
    return out_path
