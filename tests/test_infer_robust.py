"""tools/infer.py against hostile and heavy inputs (issue 16): a TorchScript file runs only when trusted, non-finite
weights are refused, tiles are exact at the default overlap (the receptive-field radius) and hold memory near one
tile's worth, and an image that fails (out of memory) is skipped while the others finish."""
import json
import os
import shutil
import subprocess
import sys
import tracemalloc
import warnings

import cv2
import numpy as np
import pytest
import torch
from basicsr.archs.srresnet_arch import MSRResNet
from conftest import REPO, photo_crops
from torch.nn import functional as F

from srdistill.archs.multi_exit import build_network
from srdistill.archs.multi_exit_srresnet_arch import MultiExitSRResNet
from srdistill.inference import infer_cli
from srdistill.inference.images import upscale_alpha, upscale_image
from srdistill.inference.infer_cli import main
from srdistill.inference.runners import TorchRunner, load_runner
from srdistill.utils.errors import UserError
from srdistill.utils.matlab_imresize import imresize
from srdistill.utils.tiling import plan_overlap


class Overwriter(torch.nn.Module):
    """The attack: a scripted ``forward`` that writes into any file through a shared memory map, then upscales."""

    def __init__(self, target: str):
        super().__init__()
        self.target = target

    def forward(self, x):
        mem = torch.from_file(self.target, shared=True, size=6, dtype=torch.uint8)
        return F.interpolate(x, scale_factor=2.0, mode='nearest') + mem.fill_(88)[0].float() * 0


def _save_ckpt(root, net):
    """``net`` as BasicSR saves it, in an experiment folder under ``root``; returns the checkpoint's path."""
    path = root / 'exp' / 'models' / 'net_g_1.pth'
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({'params': net.state_dict()}, path)
    return str(path)


def test_torchscript_runs_only_when_trusted(tmp_path, capsys):
    victim = tmp_path / 'elsewhere' / 'victim.txt'
    victim.parent.mkdir()
    victim.write_bytes(b'intact\n')
    evil = tmp_path / 'x.torchscript.pt'
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', FutureWarning)  # torch.jit.script's deprecation notice
        torch.jit.script(Overwriter(str(victim))).save(str(evil))
    disguised = tmp_path / 'weights.pth'  # the same program under a checkpoint's name: found by its content
    shutil.copy(evil, disguised)
    cv2.imwrite(str(tmp_path / 'a.png'), photo_crops(1, 16)[0])
    for model in (evil, disguised):
        args = ['--model', str(model), '--input', str(tmp_path / 'a.png'), '--output', str(tmp_path / 'out')]
        assert main(args) == 2
        err = capsys.readouterr().err
        assert err.count('\n') == 1 and f'{model} is a TorchScript file, which is a program' in err
        assert 'Pass --trust-torchscript only if you trust' in err and '.safetensors or .onnx' in err
        assert victim.read_bytes() == b'intact\n' and not (tmp_path / 'out').exists()
    # the attack is real: once trusted, the file's own code runs and overwrites a file outside the output folder
    assert main(args + ['--trust-torchscript']) == 0
    assert victim.read_bytes() == b'XXXXXX\n'
    assert cv2.imread(str(tmp_path / 'out' / 'a.png')).shape == (32, 32, 3)


def test_non_finite_weights_are_refused(tmp_path):
    import onnx
    from onnx import numpy_helper
    from safetensors.torch import save_file
    torch.manual_seed(0)
    net = MSRResNet(num_feat=8, num_block=2, upscale=2).eval()  # what an exported exit is, weight for weight
    state = {k: v.clone() for k, v in net.state_dict().items()}
    state['body.1.conv2.weight'][0, 0, 0, 0] = float('nan')
    save_file(state, str(tmp_path / 'nan.safetensors'))
    with pytest.raises(UserError, match=r'nan.safetensors holds non-finite weights: body.1.conv2.weight has 1 inf/nan'):
        load_runner(str(tmp_path / 'nan.safetensors'))
    # the legacy exporter (fast; srdistill's export uses dynamo): the same parameter names and network
    torch.onnx.export(net, torch.rand(1, 3, 16, 16), str(tmp_path / 'good.onnx'), dynamo=False, input_names=['lr'],
                      dynamic_axes={'lr': {2: 'h', 3: 'w'}})

    def edit_onnx(name, value, out):
        model = onnx.load(str(tmp_path / 'good.onnx'))
        for i, tensor in enumerate(model.graph.initializer):
            if tensor.name == name:
                array = np.full_like(numpy_helper.to_array(tensor), value)
                model.graph.initializer[i].CopyFrom(numpy_helper.from_array(array, name))
        onnx.save(model, str(tmp_path / out))
        return str(tmp_path / out)

    runner = load_runner(edit_onnx('conv_hr.weight', 0.01, 'ok.onnx'))  # an edit alone is not refused
    assert (runner.scale, runner.radius) == (2, 2 * 2 + 3)  # an SRResNet-2: 2 * depth + 3
    with pytest.raises(UserError, match=r'inf.onnx holds non-finite weights: conv_hr.weight has 576 inf/nan values'):
        load_runner(edit_onnx('conv_hr.weight', np.inf, 'inf.onnx'))
    # finite weights, infinite output (float32 overflow): the probe notices
    with pytest.raises(UserError, match=r'huge.onnx gives non-finite output \(inf/nan\)'):
        load_runner(edit_onnx('conv_first.weight', 3e38, 'huge.onnx'))


_ARCH_HEADS = [('MultiExitSRResNet', 'full'), ('MultiExitSRResNet', 'light'), ('MultiExitEDSR', 'full'),
               ('MultiExitEDSR', 'light')]
_SHAPES = [(2, 2, None), (3, 1, None), (4, 3, None), (4, 4, 2), (3, 3, 1)]  # (scale, depth, exit_depth)


@pytest.mark.parametrize('arch, head, scale, depth, exit_depth',
                         [(*a, *s) for a in _ARCH_HEADS for s in _SHAPES]
                         + [('MultiExitSRResNet', 'full', 2, 32, None)])  # the deep case once: it is the slow one
def test_receptive_radius_is_exact(arch, head, scale, depth, exit_depth):
    """The SR pixels of one LR pixel ``c`` depend on LR pixels ``c - r .. c + r``, no more, no fewer: with every weight,
    bias and input positive no path cancels and no ReLU is off, so the input gradient is non-zero exactly on the
    receptive field (float64: the longest paths multiply 2 * depth + 3 small weights). For every architecture and
    head, against the architecture's own ``receptive_radius``."""
    torch.manual_seed(0)
    net = build_network(dict(type=arch, num_feat=4, num_block=depth, upscale=scale, exit_head=head,
                             exits=[exit_depth] if exit_depth else []))
    net = net.double().eval()
    with torch.no_grad():
        for p in net.parameters():
            p.uniform_(0.01, 0.1)
    radius = net.receptive_radius(exit_depth)
    expected = 2 * (exit_depth or depth) + {'MultiExitSRResNet': 3, 'MultiExitEDSR': 4}[arch]
    assert radius == (expected if head == 'full' or not exit_depth else 2 * exit_depth + 2)
    size = 2 * radius + 9
    c = size // 2
    x = torch.full((1, 3, size, size), 0.5, dtype=torch.float64, requires_grad=True)
    out = net(x) if exit_depth is None else net(x, exit=exit_depth)
    out[..., c * scale:(c + 1) * scale, c * scale:(c + 1) * scale].sum().backward()
    rows, cols = torch.nonzero(x.grad[0].abs().sum(0), as_tuple=True)
    assert (rows.min().item(), rows.max().item(), cols.min().item(), cols.max().item()) == \
        (c - radius, c + radius, c - radius, c + radius)
    assert TorchRunner(net.float(), scale, 'cpu', exit_depth=exit_depth).radius == radius


@pytest.fixture(scope='module')
def deep_net():
    """A 32-block SRResNet (4 channels) whose blocks are strong enough that a distant pixel shows in the output."""
    torch.manual_seed(0)
    net = MultiExitSRResNet(num_feat=4, num_block=32, upscale=2).eval()
    with torch.no_grad():
        for block in net.body:
            block.conv1.weight.mul_(8)
            block.conv2.weight.mul_(8)
    return net


def test_tiles_are_exact_at_the_default_overlap_of_a_32_block_net(deep_net):
    runner = TorchRunner(deep_net, 2, 'cpu')
    assert runner.radius == 67
    overlap, note = plan_overlap(150, None, runner.radius)
    assert (overlap, note) == (134, None)
    img = (photo_crops(1, 200)[0][:160, :180].astype(np.uint16) * 257)  # 16-bit: float differences show
    whole = upscale_image(runner, img).astype(np.int64)
    assert np.abs(upscale_image(runner, img, tile=150, overlap=overlap) - whole).max() <= 1  # float rounding at most
    # the old default (32) is far from exact on this network, and the user is told so
    overlap, note = plan_overlap(64, 32, runner.radius)
    assert 'not exact for this network (its receptive field reaches 67 LR pixels; 134 is exact)' in note
    diff = np.abs(upscale_image(runner, img, tile=64, overlap=overlap) - whole)
    assert diff.max() > 300 and (diff > 1).mean() > 0.3


def test_cli_default_overlap_follows_the_network(deep_net, tmp_path, capsys):
    ckpt = _save_ckpt(tmp_path, deep_net)
    cv2.imwrite(str(tmp_path / 'a.png'), photo_crops(1, 40)[0])
    args = ['--model', ckpt, '--input', str(tmp_path / 'a.png'), '--output', str(tmp_path / 'out'), '--overwrite']
    assert main(args + ['--tile', '100']) == 2
    assert ('--tile 100 is too small for exact tiles of this network: its receptive field reaches 67 LR pixels, so '
            'tiles overlap by 134. Use --tile 268') in capsys.readouterr().err
    assert main(args + ['--tile', '30', '--tile-overlap', '8']) == 0
    err = capsys.readouterr().err
    assert 'note: --tile-overlap 8 is not exact for this network' in err
    assert main(args + ['--tile', '30', '--tile-overlap', '30']) == 2
    assert '--tile 30 must be larger than --tile-overlap 30' in capsys.readouterr().err


class Recorder:
    """A runner that records the size of every batch it is given."""

    def __init__(self, runner):
        self.runner, self.scale, self.radius, self.shapes = runner, runner.scale, runner.radius, []

    def __call__(self, batch, *args):
        self.shapes.append(batch.shape)
        return self.runner(batch, *args)


def test_tiled_inference_holds_one_tile_and_the_output():
    torch.manual_seed(0)
    runner = Recorder(TorchRunner(MultiExitSRResNet(num_feat=4, num_block=1, upscale=4), 4, 'cpu'))
    img = cv2.resize(photo_crops(1, 200)[0], (400, 300))
    tile = 64
    tracemalloc.start()
    try:
        out = upscale_image(runner, img, tile=tile, overlap=2 * runner.radius)
        peak = tracemalloc.get_traced_memory()[1]  # NumPy's allocations (torch's are not traced; they are tile-sized)
    finally:
        tracemalloc.stop()
    assert out.shape == (1200, 1600, 3) and out.dtype == np.uint8
    assert max(max(s[2:]) for s in runner.shapes) <= tile  # one tile on the device at a time, never the whole input
    tile_float64 = (tile * 4)**2 * 3 * 8
    assert peak < out.nbytes + 3 * tile_float64, (peak, out.nbytes)  # before: float64 copies of the whole output
    assert np.array_equal(out, upscale_image(runner, img))


def test_tiled_image_kinds_equal_untiled():
    torch.manual_seed(0)
    runner = TorchRunner(MultiExitSRResNet(num_feat=4, num_block=2, upscale=3), 3, 'cpu')
    bgr = photo_crops(1, 50)[0][:50, :41]
    alpha = cv2.cvtColor(photo_crops(1, 50, seed=3)[0], cv2.COLOR_BGR2GRAY)[:50, :41]
    for img in (cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), np.dstack([bgr, alpha]).astype(np.uint16) * 257):
        tiled = upscale_image(runner, img, tile=30, overlap=2 * runner.radius)
        # equal up to float rounding: a convolution of another size may round differently (1 level in 65535)
        assert tiled.dtype == img.dtype and np.abs(tiled - upscale_image(runner, img).astype(np.int64)).max() <= 1
        if img.ndim == 3:
            assert np.array_equal(tiled[..., 3], imresize(alpha.astype(np.uint16) * 257, 3))
    assert np.array_equal(upscale_alpha(alpha, 3, rows=7), imresize(alpha, 3))  # strips of alpha: same as a whole


def test_a_failing_image_is_skipped_and_the_others_finish(tmp_path, capsys, monkeypatch):
    torch.manual_seed(0)
    ckpt = _save_ckpt(tmp_path, MultiExitSRResNet(num_feat=4, num_block=1, upscale=2))
    inputs = tmp_path / 'in'
    inputs.mkdir()
    for name in 'abcd':
        cv2.imwrite(str(inputs / f'{name}.png'), photo_crops(1, 16)[0])
    failures = {'b.png': MemoryError(), 'c.png': RuntimeError('CUDA out of memory. Tried to allocate 2.00 GiB')}
    real, done = infer_cli.upscale_image, []

    def upscale(runner, img, tile, overlap):  # inputs are processed in name order
        done.append(f'{"abcd"[len(done)]}.png')
        if done[-1] in failures:
            raise failures[done[-1]]
        return real(runner, img, tile, overlap)

    monkeypatch.setattr(infer_cli, 'upscale_image', upscale)
    assert main(['--model', ckpt, '--input', str(inputs), '--output', str(tmp_path / 'out'), '--tile', '32']) == 1
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.startswith('skipped: ')]
    assert lines == [f'skipped: {inputs / "b.png"}: out of memory (MemoryError: MemoryError); use a smaller --tile '
                     'than 32.',
                     f'skipped: {inputs / "c.png"}: out of memory (RuntimeError: CUDA out of memory. Tried to allocate '
                     '2.00 GiB); use a smaller --tile than 32.']
    assert '2 of 4 images written' in captured.out
    assert sorted(os.listdir(tmp_path / 'out')) == ['a.png', 'd.png']


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='RLIMIT_AS and /proc/self/status are Linux')
def test_a_real_out_of_memory_image_is_skipped(tmp_path):
    """Under an address-space limit, an untiled large image fails to allocate and is skipped; the images after it
    are written; with --tile the same image fits (both runs in one process: its start is the slow part)."""
    torch.manual_seed(0)
    ckpt = _save_ckpt(tmp_path, MultiExitSRResNet(num_feat=16, num_block=1, upscale=4))
    inputs = tmp_path / 'in'
    inputs.mkdir()
    cv2.imwrite(str(inputs / 'a.png'), photo_crops(1, 16)[0])
    cv2.imwrite(str(inputs / 'b_large.png'), cv2.resize(photo_crops(1, 200)[0], (700, 500)))
    cv2.imwrite(str(inputs / 'c.png'), photo_crops(1, 16)[0])
    script = ('import resource, sys\n'
              'from srdistill.inference.infer_cli import main\n'
              'import torch, onnxruntime, safetensors.torch\n'
              'size = int(open("/proc/self/status").read().split("VmSize:")[1].split()[0]) * 1024\n'
              'resource.setrlimit(resource.RLIMIT_AS, (size + 600 * 2**20, resource.RLIM_INFINITY))\n'
              'args = ["--model", sys.argv[1], "--device", "cpu", "--input", sys.argv[2], "--output"]\n'
              'untiled = main(args + [sys.argv[3]])\n'
              'sys.exit(10 * untiled + main(args + [sys.argv[4], "--tile", "128"]))\n')
    result = subprocess.run([sys.executable, '-c', script, ckpt, str(inputs), str(tmp_path / 'untiled'),
                             str(tmp_path / 'tiled')], capture_output=True, text=True,
                            env=dict(os.environ, OMP_NUM_THREADS='1'), cwd=REPO)
    assert result.returncode == 10, result.stderr[-2000:]  # untiled: 1 (one image failed), tiled: 0
    assert f'skipped: {inputs / "b_large.png"}: out of memory (' in result.stderr
    assert 'use --tile 512 (or smaller) to bound memory.' in result.stderr and 'Traceback' not in result.stderr
    assert sorted(os.listdir(tmp_path / 'untiled')) == ['a.png', 'c.png']
    assert cv2.imread(str(tmp_path / 'tiled' / 'b_large.png')).shape == (2000, 2800, 3)


def test_memory_benchmark_writes_its_table(tmp_path):
    from srdistill.benchmark.infer_memory import main as bench
    from srdistill.benchmark.infer_memory import measure_case
    untiled = measure_case(4, 1, 4, '40x30', None)  # in this process; the sweep runs each case in a child
    assert untiled['tile'] is None and untiled['peak_rss_mb'] >= untiled['baseline_rss_mb'] > 0
    out = tmp_path / 'infer_memory.md'
    assert bench(['--num-feat', '4', '--num-block', '1', '--sizes', '40x30', '--untiled-sizes', '--tile', '16',
                  '--out', str(out)]) == 0
    report = json.loads((tmp_path / 'infer_memory.json').read_text())
    [row] = report['rows']
    case = (row['lr_size'], row['hr_size'], row['tile'], row['overlap'], row['tiles'])
    assert case == ('40x30', '160x120', 16, 10, 20)  # 4 x 5 windows of 16 LR pixels, 6 apart
    assert row['peak_rss_mb'] >= row['baseline_rss_mb'] > 0 and row['output_mb'] == 160 * 120 * 3 / 2**20
    text = out.read_text()
    assert 'Command: `python -m srdistill.benchmark.infer_memory --num-feat 4 --num-block 1 --sizes 40x30' in text
    assert '| 40x30 | 160x120 | 0.1 | 16 (10), 20 tiles |' in text
