"""An exit of a multi-exit SRResNet as a standalone BasicSR ``MSRResNet(num_block=k)``, weight for weight.

"First conv + blocks 1..k + tail k" of :class:`MultiExitSRResNet` has exactly the layers of an ``MSRResNet`` with
``num_block=k``: the exit's tail parameters ``exit_tails.<k>.*`` become the MSRResNet tail's, and nothing of the deeper
blocks or other tails is kept.
"""
from collections import OrderedDict

from basicsr.archs.srresnet_arch import MSRResNet

from srdistill.utils.errors import UserError

TAIL_PREFIXES = ('upconv1.', 'upconv2.', 'conv_hr.', 'conv_last.')  # MSRResNet's upsampling tail


def exit_state_dict(state, depth, num_block):
    """The ``MSRResNet(num_block=depth)`` state dict of one output of a multi-exit state dict.

    Args:
        state (dict): MultiExitSRResNet (or MSRResNet) state dict.
        depth (int): The exit (or ``num_block`` for the final output).
        num_block (int): Blocks of the multi-exit trunk.

    Returns:
        OrderedDict: Parameter name -> tensor, in MSRResNet's names.
    """
    out = OrderedDict()
    for name, value in state.items():
        if name.startswith('conv_first.'):
            out[name] = value
        elif name.startswith('body.') and int(name.split('.')[1]) < depth:
            out[name] = value
        elif depth == num_block and name.startswith(TAIL_PREFIXES):
            out[name] = value
        elif depth != num_block and name.startswith(f'exit_tails.{depth}.'):
            out[name[len(f'exit_tails.{depth}.'):]] = value
    return out


def resolve_exits(requested, depths):
    """Depths to export: ``'all'``, ``'final'`` or a list of ints; each must be an output of the network.

    Raises:
        UserError: A depth the checkpoint does not have (the message lists the ones it has).
    """
    if requested in (None, 'all', ['all']):
        return list(depths)
    if requested in ('final', ['final']):
        return [depths[-1]]
    missing = [d for d in requested if d not in depths]
    if missing:
        raise UserError(f'--exit {missing}: the checkpoint has no such output; it has {list(depths)} (the last is the '
                        'final output).')
    return list(requested)


def load_msrresnet(net_opt, depth, exit_state):
    """BasicSR's ``MSRResNet(num_block=depth)`` with an exit's state dict loaded strictly, in eval mode."""
    net = MSRResNet(num_in_ch=net_opt['num_in_ch'], num_out_ch=net_opt['num_out_ch'], num_feat=net_opt['num_feat'],
                    num_block=depth, upscale=net_opt['upscale'])
    net.load_state_dict(exit_state, strict=True)
    return net.eval()


def build_exit(net_opt, state, depth):
    """The output at ``depth`` of a multi-exit state dict as a standalone BasicSR ``MSRResNet``."""
    return load_msrresnet(net_opt, depth, exit_state_dict(state, depth, net_opt['num_block']))
