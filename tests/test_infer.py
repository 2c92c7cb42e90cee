"""tools/infer.py: every model kind gives the exit's output; image kinds are kept; tiling; failures and overwrites."""
import cv2
import numpy as np
import pytest
import torch
from conftest import photo_crops

from srdistill.archs.multi_exit_srresnet_arch import MultiExitSRResNet
from srdistill.export.exporter import export
from srdistill.inference.images import upscale_image
from srdistill.inference.infer_cli import main
from srdistill.inference.runners import TorchRunner, load_runner
from srdistill.utils.matlab_imresize import imresize


@pytest.fixture
def ckpt(tmp_path):
    torch.manual_seed(0)
    net = MultiExitSRResNet(num_feat=8, num_block=4, exits=[2], upscale=2)
    (tmp_path / 'exp' / 'models').mkdir(parents=True)
    torch.save({'params': net.state_dict()}, tmp_path / 'exp' / 'models' / 'net_g_1.pth')
    return str(tmp_path / 'exp' / 'models' / 'net_g_1.pth'), net.eval()


def test_every_model_kind_runs_the_exit(ckpt, tmp_path):
    path, net = ckpt
    export(path, ('pth', 'safetensors', 'onnx', 'torchscript'), str(tmp_path / 'x'), exits=[2])
    lr = photo_crops(1, 24)[0]
    with torch.no_grad():
        expected = net(torch.from_numpy(lr[..., ::-1].transpose(2, 0, 1) / 255.).float()[None], exit=2)
    expected = np.floor(expected[0].clamp(0, 1).numpy().transpose(1, 2, 0)[..., ::-1] * 255 + 0.5)
    for model in ('exp_e2_x2.pth', 'exp_e2_x2.safetensors', 'exp_e2_x2.onnx', 'exp_e2_x2.torchscript.pt'):
        trusted = model.endswith('.torchscript.pt')  # a program: refused without the flag (test_infer_robust.py)
        out = upscale_image(load_runner(str(tmp_path / 'x' / model), trust_torchscript=trusted), lr)
        assert out.shape == (48, 48, 3) and np.abs(out - expected).max() <= 1, model
    out = upscale_image(load_runner(path, exit_depth=2), lr)  # checkpoint + exit
    assert np.abs(out - expected).max() == 0


def test_torch_runner_runs_in_channels_last(ckpt):
    """tools/infer.py's PyTorch runner puts the network in channels_last (faster on the benchmark CPU, docs/speed.md)
    and gives what the default layout gives."""
    path, net = ckpt
    runner = load_runner(path, exit_depth=2)
    assert runner.memory_format == torch.channels_last
    assert runner.net.conv_first.weight.is_contiguous(memory_format=torch.channels_last)
    plain = TorchRunner(net, 2, 'cpu', exit_depth=2, channels_last=False)
    assert plain.net.conv_first.weight.is_contiguous()
    lr = photo_crops(1, 20)[0]
    assert np.abs(upscale_image(runner, lr).astype(int) - upscale_image(plain, lr).astype(int)).max() <= 1


def test_image_kinds_are_kept(ckpt):
    runner = load_runner(ckpt[0])
    bgr = photo_crops(1, 20)[0]
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    out = upscale_image(runner, gray)
    assert out.shape == (40, 40) and out.dtype == np.uint8
    alpha = np.tile(np.linspace(0, 255, 20).astype(np.uint8), (20, 1))
    out = upscale_image(runner, np.dstack([bgr, alpha]))
    assert out.shape == (40, 40, 4) and np.array_equal(out[..., 3], imresize(alpha, 2))  # alpha upscaled separately
    assert np.array_equal(out[..., :3], upscale_image(runner, bgr))
    deep = bgr.astype(np.uint16) * 257
    out16 = upscale_image(runner, deep)
    assert out16.dtype == np.uint16 and np.abs(out16 / 257 - upscale_image(runner, bgr)).max() <= 1


def test_tiled_output_equals_untiled(ckpt):
    runner = TorchRunner(ckpt[1], 2, 'cpu')
    lr = photo_crops(1, 60)[0]
    whole = upscale_image(runner, lr)
    tiled = upscale_image(runner, lr, tile=24, overlap=20)  # overlap // 2 covers the receptive field (radius 8)
    assert np.array_equal(whole, tiled)


def test_cli_formats_failures_and_overwrites(ckpt, tmp_path, capsys):
    inputs = tmp_path / 'in'
    inputs.mkdir()
    for ext in ('.png', '.jpg', '.bmp', '.webp'):
        cv2.imwrite(str(inputs / f'p{ext[1:]}{ext}'), photo_crops(1, 16)[0])
    (inputs / 'broken.png').write_bytes(b'\x89PNG\r\n\x1a\n truncated')
    (inputs / 'notes.txt').write_text('not an image, not picked up')
    out = tmp_path / 'out'
    assert main(['--model', ckpt[0], '--exit', '2', '--input', str(inputs), '--output', str(out), '--suffix',
                 '_x2']) == 1  # one input failed, the rest finished
    captured = capsys.readouterr()
    assert 'skipped: ' in captured.err and 'broken.png is truncated' in captured.err
    assert '4 of 5 images written' in captured.out
    assert sorted(p.name for p in out.iterdir()) == ['pbmp_x2.bmp', 'pjpg_x2.jpg', 'ppng_x2.png', 'pwebp_x2.webp']
    assert cv2.imread(str(out / 'pwebp_x2.webp')).shape == (32, 32, 3)

    glob_args = ['--model', ckpt[0], '--input', str(inputs / 'p*.png'), '--output', str(out), '--suffix', '_x2']
    assert main(glob_args) == 2
    assert 'ppng_x2.png exists (1 outputs do); pass --overwrite' in capsys.readouterr().err
    assert main(glob_args + ['--overwrite']) == 0
    # never onto an input
    assert main(['--model', ckpt[0], '--input', str(inputs / 'ppng.png'), '--output', str(inputs), '--overwrite']) == 2
    assert 'is an input: writing there would overwrite it' in capsys.readouterr().err


@pytest.mark.parametrize('args, message', [
    (['--exit', '3'], '--exit 3: '),
    (['--precision', 'fp16', '--device', 'cpu'], '--precision fp16 needs a CUDA device'),
])
def test_cli_bad_arguments(ckpt, tmp_path, capsys, args, message):
    cv2.imwrite(str(tmp_path / 'a.png'), photo_crops(1, 16)[0])
    assert main(['--model', ckpt[0], '--input', str(tmp_path / 'a.png'), '--output', str(tmp_path / 'o'), *args]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / 'o').exists()
