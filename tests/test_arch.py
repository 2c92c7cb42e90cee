"""MultiExitSRResNet: each exit is BasicSR's MSRResNet(num_block=k) weight for weight; one trunk pass; validation."""
import pytest
import torch
from basicsr.archs.srresnet_arch import MSRResNet
from basicsr.utils.registry import ARCH_REGISTRY

from srdistill.archs.multi_exit_srresnet_arch import MultiExitSRResNet


def _exit_as_msrresnet_state(net, k):
    """State dict of "first conv + blocks 1..k + tail k" under MSRResNet's parameter names."""
    state = net.state_dict()
    out = {n: v for n, v in state.items() if n.startswith('conv_first.')}
    out.update({n: v for n, v in state.items() if n.startswith('body.') and int(n.split('.')[1]) < k})
    tail_prefix = f'exit_tails.{k}.'
    if k == net.num_block:
        out.update({n: v for n, v in state.items() if not n.startswith(('conv_first.', 'body.', 'exit_tails.'))})
    else:
        out.update({n[len(tail_prefix):]: v for n, v in state.items() if n.startswith(tail_prefix)})
    return out


@pytest.mark.parametrize('upscale', [2, 3, 4])
def test_every_exit_equals_msrresnet_with_k_blocks(upscale):
    torch.manual_seed(0)
    net = MultiExitSRResNet(num_feat=8, num_block=6, exits=[1, 3], upscale=upscale).eval()
    x = torch.rand(2, 3, 11, 9)
    with torch.no_grad():
        outputs = net(x, exit='all')
    assert list(outputs) == [1, 3, 6]
    for k, out in outputs.items():
        ref = MSRResNet(num_feat=8, num_block=k, upscale=upscale).eval()
        ref.load_state_dict(_exit_as_msrresnet_state(net, k), strict=True)
        with torch.no_grad():
            expected = ref(x)
            alone = net(x, exit=k)
        assert out.shape == (2, 3, 11 * upscale, 9 * upscale)
        assert torch.equal(out, expected), f'exit {k} differs from MSRResNet(num_block={k})'
        assert torch.equal(alone, expected)


def test_no_exits_is_a_plain_msrresnet():
    net = MultiExitSRResNet(num_feat=8, num_block=3, exits=[], upscale=4).eval()
    ref = MSRResNet(num_feat=8, num_block=3, upscale=4).eval()
    ref.load_state_dict(net.state_dict(), strict=True)  # same parameter names, nothing extra
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(net(x), ref(x))
        assert list(net(x, exit='all')) == [3]


def _count_calls(net):
    calls = {'blocks': 0, 'tails': 0}
    for block in net.body:
        block.register_forward_hook(lambda *a: calls.__setitem__('blocks', calls['blocks'] + 1))
    for tail in net.exit_tails.values():
        tail.register_forward_hook(lambda *a: calls.__setitem__('tails', calls['tails'] + 1))
    return calls


def test_all_exits_come_from_one_trunk_pass_and_final_alone_runs_no_exit_tail():
    net = MultiExitSRResNet(num_feat=8, num_block=8, exits=[2, 4], upscale=4).eval()
    calls = _count_calls(net)
    x = torch.rand(1, 3, 6, 6)
    net(x, exit='all')
    assert calls == {'blocks': 8, 'tails': 2}
    calls.update(blocks=0, tails=0)
    net(x)
    assert calls == {'blocks': 8, 'tails': 0}
    calls.update(blocks=0, tails=0)
    net(x, exit=2)  # a shallow exit runs only its own blocks
    assert calls == {'blocks': 2, 'tails': 1}


def test_exit_tails_hold_only_their_own_layers():
    net = MultiExitSRResNet(num_feat=8, num_block=4, exits=[2], upscale=4)
    names = sorted(n for n, _ in net.named_parameters() if n.startswith('exit_tails.2.'))
    assert [n.split('.', 2)[2] for n in names] == [
        'conv_hr.bias', 'conv_hr.weight', 'conv_last.bias', 'conv_last.weight', 'upconv1.bias', 'upconv1.weight',
        'upconv2.bias', 'upconv2.weight'
    ]


def test_registered_and_depths():
    net = ARCH_REGISTRY.get('MultiExitSRResNet')(num_feat=4, num_block=5, exits=[1, 4], upscale=2)
    assert net.depths == (1, 4, 5)


@pytest.mark.parametrize('exits, message', [
    ([8, 4], 'ascending'),
    ([4, 4], 'must not repeat'),
    ([8], r'\[1, num_block - 1\] = \[1, 7\]'),
    ([0], r'\[1, 7\]'),
    ([-2], r'\[1, 7\]'),
    ([2.5], 'integers'),
])
def test_invalid_exits_fail_at_construction(exits, message):
    with pytest.raises(ValueError, match=message):
        MultiExitSRResNet(num_feat=4, num_block=8, exits=exits)


def test_invalid_upscale_and_exit_request():
    with pytest.raises(ValueError, match=r'upscale must be one of \(2, 3, 4\), got 8'):
        MultiExitSRResNet(num_feat=4, num_block=2, upscale=8)
    net = MultiExitSRResNet(num_feat=4, num_block=4, exits=[2])
    with pytest.raises(ValueError, match=r"one of \[2, 4\] or a list of them, got 3"):
        net(torch.rand(1, 3, 4, 4), exit=3)
