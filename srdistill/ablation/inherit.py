"""The weight-inherit baseline: cut the first blocks (and the final tail) out of a trained deep network."""
import torch

from srdistill.archs.checkpoints import load_checkpoint


def write_cut(ckpt_path, depth, out_path):
    """Write the cut of ``ckpt_path`` at ``depth`` (the network's ``cut_state_dict``: its first ``depth`` blocks and its
    final tail) as a BasicSR checkpoint. Returns ``out_path``."""
    net, _ = load_checkpoint(ckpt_path)
    torch.save({'params': net.cut_state_dict(depth)}, out_path)
    return out_path
