"""Weights a run starts from: the weight-inherit baseline (the first blocks and the final tail cut out of a trained
deep network), or an exit of it, channel-pruned (docs/pruning.md)."""
import torch

from srdistill.archs.checkpoints import load_checkpoint


def write_cut(ckpt_path, depth, out_path):
    """Write the cut of ``ckpt_path`` at ``depth`` (the network's ``cut_state_dict``: its first ``depth`` blocks and its
    final tail) as a BasicSR checkpoint. Returns ``out_path``."""
    net, _ = load_checkpoint(ckpt_path)
    torch.save({'params': net.cut_state_dict(depth)}, out_path)
    return out_path


def write_pruned(ckpt_path, depth, ratio, round_to, out_path, mode='uniform'):
    """Write exit ``depth`` of ``ckpt_path`` pruned at ``ratio``
    (:func:`~srdistill.pruning.channel_pruning.prune_state_dict`) as a BasicSR checkpoint, with the pruned network's
    options (``'network'``, as an export stores them). Returns ``(out_path, network options)``."""
    from srdistill.pruning.channel_pruning import prune_state_dict
    net, _ = load_checkpoint(ckpt_path)
    network, state, _ = prune_state_dict(net.exit_state_dict(depth), ratio, round_to, mode)
    torch.save({'params': state, 'network': network}, out_path)
    return out_path, network
