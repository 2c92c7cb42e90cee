"""The multi-exit interface (docs/architecture.md), checked on every registered architecture and both exit heads:
each exit is its standalone network (built through ARCH_REGISTRY, loaded strictly) output for output; checkpoints
are recognised from their weights; costs and the weight-inherit cut agree with the standalone networks."""
import pytest
import torch
from basicsr.utils.registry import ARCH_REGISTRY

from srdistill.archs.checkpoints import load_checkpoint
from srdistill.archs.cost import exit_macs, forward_macs
from srdistill.archs.multi_exit import build_network, multi_exit_archs, network_opt_from_state_dict
from srdistill.utils.errors import UserError

ARCHS = sorted(multi_exit_archs())
HEADS = ['full', 'light']


def _net(arch, head, upscale=4, exits=(1, 3), num_block=5, **kwargs):
    torch.manual_seed(0)
    return build_network(dict(type=arch, num_feat=8, num_block=num_block, exits=list(exits), upscale=upscale,
                              exit_head=head, **kwargs)).eval()


def test_both_architectures_are_registered():
    assert {'MultiExitSRResNet', 'MultiExitEDSR'} <= set(ARCHS)


@pytest.mark.parametrize('arch', ARCHS)
@pytest.mark.parametrize('head', HEADS)
@pytest.mark.parametrize('upscale', [2, 3, 4])
def test_every_exit_is_its_standalone_network(arch, head, upscale):
    net = _net(arch, head, upscale)
    x = torch.rand(2, 3, 11, 9)
    with torch.no_grad():
        outputs = net(x, exit='all')
        assert list(outputs) == [1, 3, 5]
        for depth, out in outputs.items():
            opt = net.exit_network_opt(depth)
            sub = net.exit_network(depth)  # ARCH_REGISTRY.get(opt['type'])(**opt), strict load
            assert type(sub) is ARCH_REGISTRY.get(opt['type'])
            assert out.shape == (2, 3, 11 * upscale, 9 * upscale)
            assert torch.allclose(sub(x), out, atol=1e-6, rtol=0), f'{arch} {head} exit {depth}'
            assert torch.equal(net(x, exit=depth), out)
            assert net.exit_parameters(depth) == sum(p.numel() for p in sub.parameters())
            assert exit_macs(net, depth, (24 * upscale, 12 * upscale)) == forward_macs(sub, (24, 12))
        assert torch.equal(net(x), outputs[5])


@pytest.mark.parametrize('arch', ARCHS)
def test_full_head_exits_are_basicsr_networks_and_no_exits_is_the_plain_one(arch):
    net = _net(arch, 'full', exits=[2])
    plain_type = net.exit_network_opt(5)['type']
    assert ARCH_REGISTRY.get(plain_type).__module__.startswith('basicsr.archs.')  # BasicSR's MSRResNet / EDSR
    assert net.exit_network_opt(2)['type'] == plain_type
    plain = build_network(net.exit_network_opt(5))
    bare = _net(arch, 'full', exits=[])
    plain.load_state_dict(bare.state_dict(), strict=True)  # same names, nothing extra
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(plain.eval()(x), bare(x))


@pytest.mark.parametrize('arch', ARCHS)
@pytest.mark.parametrize('head', HEADS)
def test_state_dicts_are_recognised(arch, head):
    net = _net(arch, head, upscale=3, hint_adapters=True)
    opt = network_opt_from_state_dict(net.state_dict())
    assert opt['type'] == arch
    assert {k: v for k, v in opt.items() if k != 'type'} == {k: v for k, v in net.arch_opt.items() if k in opt}
    assert set(net.arch_opt) - set(opt) <= {'res_scale', 'img_range', 'rgb_mean'}  # not weights: see below
    for depth in net.depths:
        sub = net.exit_network(depth)
        found = network_opt_from_state_dict(sub.state_dict())
        wanted = net.exit_network_opt(depth)
        # a BasicSR standalone is read as the multi-exit network that extends it (no exits): the same outputs
        expected_type = arch if wanted['type'] == net.exit_network_opt(5)['type'] else wanted['type']
        assert found['type'] == expected_type
        assert (found['num_block'], found['upscale']) == (depth, 3)


# multiply-adds per LR pixel of exit 4 of a 16-block, 8-channel x4 network, counted by hand: conv_first 3*8*9 = 216,
# 4 blocks 4*2*8*8*9 = 4608; SRResNet's tail: upconv1 8*32*9 = 2304, upconv2 at 2x 4*2304, conv_hr at 4x 16*576,
# conv_last at 4x 16*216; EDSR's: conv_after_body 576, upsample 2304 + 4*2304, conv_last 16*216; the light head:
# 8*48*9 = 3456 at LR
EXIT4_MACS_PER_LR_PIXEL = {('MultiExitSRResNet', 'full'): 216 + 4608 + 2304 + 9216 + 9216 + 3456,
                           ('MultiExitEDSR', 'full'): 216 + 4608 + 576 + 2304 + 9216 + 3456,
                           ('MultiExitSRResNet', 'light'): 216 + 4608 + 3456,
                           ('MultiExitEDSR', 'light'): 216 + 4608 + 3456}


@pytest.mark.parametrize('arch', ['MultiExitSRResNet', 'MultiExitEDSR'])
@pytest.mark.parametrize('head', HEADS)
def test_exit_macs_golden(arch, head):
    net = _net(arch, head, num_block=16, exits=[4])
    assert exit_macs(net, 4) == EXIT4_MACS_PER_LR_PIXEL[(arch, head)] * 180 * 320  # 1280x720 output
    assert exit_macs(net, 16) == exit_macs(_net(arch, 'full', num_block=16, exits=[4]), 16)  # the final tail stays


@pytest.mark.parametrize('arch', ARCHS)
def test_cut_state_dict_loads_into_the_shallow_network(arch):
    deep = _net(arch, 'full', exits=[], num_block=6)
    cut = deep.cut_state_dict(2)
    shallow = build_network(dict(deep.exit_network_opt(2)))
    shallow.load_state_dict(cut, strict=True)
    assert all(torch.equal(cut[k], deep.state_dict()[k]) for k in cut)
    assert not any(k.startswith(('exit_tails.', 'hint_adapters.')) for k in cut)


@pytest.mark.parametrize('arch', ARCHS)
@pytest.mark.parametrize('head', HEADS)
def test_checkpoint_round_trip(tmp_path, arch, head):
    net = _net(arch, head)
    torch.save({'params': net.state_dict()}, tmp_path / 'net_g_1.pth')
    loaded, opt = load_checkpoint(str(tmp_path / 'net_g_1.pth'))
    assert type(loaded) is type(net) and opt['type'] == arch
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(loaded(x, exit='all').values(), net(x, exit='all').values()))


def test_edsr_options_that_are_not_weights_come_from_the_run(tmp_path):
    """EDSR's res_scale is not in its state dict: a run's checkpoint takes it from the options file BasicSR copied
    into the run folder, or from the one given; a contradicting file is refused."""
    net = _net('MultiExitEDSR', 'full', res_scale=0.1)
    run = tmp_path / 'experiments' / 'edsr_run'
    (run / 'models').mkdir(parents=True)
    ckpt = run / 'models' / 'net_g_5.pth'
    torch.save({'params': net.state_dict()}, ckpt)
    (run / 'train_edsr.yml').write_text('network_g:\n  type: MultiExitEDSR\n  num_feat: 8\n  num_block: 5\n'
                                        '  exits: [1, 3]\n  res_scale: 0.1\n')
    loaded, opt = load_checkpoint(str(ckpt))
    assert opt['res_scale'] == 0.1 and loaded.body[0].res_scale == 0.1
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded(x), net(x))
    other = tmp_path / 'other.yml'
    other.write_text('network_g:\n  type: MultiExitSRResNet\n')
    with pytest.raises(UserError, match=r'does not match .*other.yml: network_g.type is MultiExitSRResNet there, '
                       r'MultiExitEDSR in the checkpoint'):
        load_checkpoint(str(ckpt), str(other))
    (run / 'train_edsr.yml').unlink()
    assert load_checkpoint(str(ckpt))[1].get('res_scale', 1) == 1  # no options anywhere: BasicSR's default
