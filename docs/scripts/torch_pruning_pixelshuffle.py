"""Why srdistill prunes SRResNet exits with its own code (docs/pruning.md): torch-pruning on BasicSR's MSRResNet.

torch-pruning's dependency graph does not tie a PixelShuffle's output channel to the ``f**2`` channels of the
convolution before it. With the upsampling convolutions prunable, ``MetaPruner.step`` fails; with them left out (as
``ignored_layers``), the upsampling tail, about 70% of an SRResNet-8's multiply-adds, is not pruned. Prints what
happens in both cases.

    pip install torch-pruning==1.6.1 && python docs/scripts/torch_pruning_pixelshuffle.py
"""
import torch
import torch_pruning as tp

import srdistill  # noqa: F401  (BasicSR's compatibility fixes, before basicsr is imported)
from srdistill.archs.cost import forward_macs


def attempt(ignore_tail):
    from basicsr.archs.srresnet_arch import MSRResNet  # after srdistill's fixes
    torch.manual_seed(0)
    net = MSRResNet(num_feat=32, num_block=8, upscale=4).eval()
    x = torch.rand(1, 3, 24, 24)
    before = forward_macs(net, (24, 24))
    ignored = [net.conv_last] + ([net.upconv1, net.upconv2, net.conv_hr] if ignore_tail else [])
    pruner = tp.pruner.MetaPruner(net, x, importance=tp.importance.MagnitudeImportance(p=1), pruning_ratio=0.5,
                                  ignored_layers=ignored)
    try:
        pruner.step()
        out = net(x).shape
    except Exception as err:  # noqa: BLE001 (what torch-pruning raises is the finding)
        return f'{type(err).__name__}: {err}'
    return f'ran; output {tuple(out)}; MACs {before / 1e6:.1f} M -> {forward_macs(net, (24, 24)) / 1e6:.1f} M'


if __name__ == '__main__':
    print('torch-pruning', tp.__version__)
    print('tail prunable:   ', attempt(ignore_tail=False))
    print('tail left out:   ', attempt(ignore_tail=True))
