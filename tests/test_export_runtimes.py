"""The OpenVINO and ncnn exports: each runs in its own runtime with the exit's output (dynamic batch and sizes), is fed
as chaiNNer / Real-ESRGAN-ncnn-vulkan feed it, runs in tools/infer.py (tiles, gray, alpha, 16-bit), and fails
cleanly (missing package, converter failure, a killed export)."""
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from conftest import photo_crops, require_module, write_opt

from srdistill.archs.multi_exit_edsr_arch import MultiExitEDSR
from srdistill.archs.multi_exit_srresnet_arch import MultiExitSRResNet
from srdistill.export import exporter, ncnn_format
from srdistill.export.exporter import TOLERANCE, export
from srdistill.inference.infer_cli import main as infer_main
from srdistill.inference.ncnn_runner import NcnnRunner, param_radius, parse_param
from srdistill.inference.openvino_runner import OpenVinoRunner
from srdistill.inference.runners import load_runner
from srdistill.utils.errors import UserError


@pytest.fixture(autouse=True, scope='module')
def _runtimes_installed():
    """Every test here needs ncnn, OpenVINO and pnnx (the test extra): skipped without them, failed under CI."""
    for module in ('ncnn', 'openvino', 'pnnx'):
        require_module(module)


RUNNERS = {'ncnn': NcnnRunner, 'openvino': OpenVinoRunner}
SUFFIX = {'ncnn': '.ncnn.param', 'openvino': '.openvino.xml'}
# SRResNet with the light exit head (exit 1) and the full one (final, 2); EDSR with a res_scale BasicSR does not default
NETS = {'srresnet': {'type': 'MultiExitSRResNet', 'num_feat': 8, 'num_block': 2, 'exits': [1], 'upscale': 4,
                     'exit_head': 'light'},
        'edsr': {'type': 'MultiExitEDSR', 'num_feat': 8, 'num_block': 2, 'exits': [1], 'upscale': 4, 'res_scale': 0.5}}
ARCHS = {'MultiExitSRResNet': MultiExitSRResNet, 'MultiExitEDSR': MultiExitEDSR}


def _perturbed(net):
    """``net`` with every parameter moved off its initialisation (zero biases would hide a dropped bias)."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.05)
    return net.eval()


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
    """Both formats of every exit of each tiny network, saved as BasicSR saves a run (the options file beside
    ``models/`` keeps EDSR's res_scale): ``{name: (net, out_dir)}``."""
    done = {}
    for name, opt in NETS.items():
        torch.manual_seed(0)
        net = _perturbed(ARCHS[opt['type']](**{k: v for k, v in opt.items() if k != 'type'}))
        root = tmp_path_factory.mktemp(name)
        (root / name / 'models').mkdir(parents=True)
        ckpt = root / name / 'models' / 'net_g_1.pth'
        torch.save({'params': net.state_dict()}, ckpt)
        write_opt(root / name / f'train_{name}.yml', {'name': name, 'network_g': opt})
        export(str(ckpt), ('ncnn', 'openvino', 'onnx', 'pth'), str(root / 'out'), exits='all')
        done[name] = net, root / 'out'
    return done


def _lr(n, size, seed=0):
    """``n`` real LR crops, float32 RGB (n, 3, size, size) in [0, 1] (not the check image's size)."""
    return np.stack([c[..., ::-1].transpose(2, 0, 1) / 255. for c in photo_crops(n, size, seed)]).astype(np.float32)


@pytest.mark.parametrize('fmt', ['ncnn', 'openvino'])
@pytest.mark.parametrize('name', list(NETS))
def test_each_exit_runs_in_its_runtime_at_other_sizes(exported, name, fmt):
    net, out = exported[name]
    for depth in net.depths:
        path = out / f'{name}_e{depth}_x4{SUFFIX[fmt]}'
        runner = load_runner(str(path))
        assert isinstance(runner, RUNNERS[fmt]) and runner.scale == 4
        assert runner.radius == net.receptive_radius(depth)  # exact tiles by default
        for lr in (_lr(2, 20), _lr(1, 13)[..., :9]):  # batch 2 square, batch 1 13 x 9: dynamic sizes
            with torch.no_grad():
                expected = net(torch.from_numpy(lr), exit=depth).clamp(0, 1).numpy()
            assert np.abs(runner(lr) - expected).max() <= TOLERANCE[fmt], (name, depth, fmt)
        side = exporter._read_sidecar(str(path))
        assert side['max_abs_diff'] <= side['tolerance'] == TOLERANCE[fmt]
        assert list(side['companions']) == [path.name.replace(SUFFIX[fmt], f'.{fmt}.bin')]


def test_ncnn_blobs_and_input_as_chainner_and_realesrgan_ncnn_vulkan_feed_them(exported):
    """Input blob ``data`` (first layer), output ``output`` (last layer); a uint8 RGB image made a Mat by
    ``from_pixels`` and scaled by 1/255, as chaiNNer's NCNN node does (Real-ESRGAN-ncnn-vulkan's shader alike)."""
    net, out = exported['srresnet']
    param = out / 'srresnet_e2_x4.ncnn.param'
    layers = parse_param(param.read_text())
    assert layers[0][:4] == ('Input', 'data', [], ['data']) and layers[-1][3] == ['output']
    rgb = np.ascontiguousarray(photo_crops(1, 19)[0][:, :15, ::-1])  # uint8 RGB, 19 x 15
    ncnn = require_module('ncnn')
    model = ncnn.Net()
    model.opt.use_fp16_storage = model.opt.use_fp16_packed = model.opt.use_fp16_arithmetic = False
    assert model.load_param(str(param)) == 0 and model.load_model(str(out / 'srresnet_e2_x4.ncnn.bin')) == 0
    mat = ncnn.Mat.from_pixels(rgb, ncnn.Mat.PixelType.PIXEL_RGB, rgb.shape[1], rgb.shape[0])
    mat.substract_mean_normalize([], [1 / 255.] * 3)
    with model.create_extractor() as ex:
        assert ex.input('data', mat) == 0
        ret, sr = ex.extract('output')
    assert ret == 0
    with torch.no_grad():
        expected = net(torch.from_numpy(rgb.transpose(2, 0, 1)[None] / 255.).float(), exit=2)[0].numpy()
    assert np.array(sr).shape == (3, 76, 60) and np.abs(np.array(sr) - expected).max() <= TOLERANCE['ncnn']


# what chaiNNer's NCNN reader (backend/src/nodes/impl/ncnn/model.py) loads: layers with weights it reads, or none;
# it refuses MemoryData outright
CHAINNER_NCNN_LAYERS = {'Input', 'Convolution', 'Split', 'BinaryOp', 'PixelShuffle', 'Interp', 'ReLU'}


@pytest.mark.parametrize('name', list(NETS))
def test_ncnn_graphs_hold_only_layers_chainner_reads(exported, name):
    net, out = exported[name]
    for depth in net.depths:
        kinds = {kind for kind, *_ in parse_param((out / f'{name}_e{depth}_x4.ncnn.param').read_text())}
        assert kinds <= CHAINNER_NCNN_LAYERS, (name, depth, kinds - CHAINNER_NCNN_LAYERS)


def test_onnx_as_chainners_onnx_node_reads_and_feeds_it(exported):
    """chaiNNer reads the layout from the input shape (an int <= 4 second: BCHW) and feeds (1, 3, h, w) RGB floats."""
    import onnxruntime as ort
    net, out = exported['edsr']
    session = ort.InferenceSession(str(out / 'edsr_e2_x4.onnx'), providers=['CPUExecutionProvider'])
    shape = session.get_inputs()[0].shape
    assert isinstance(shape[1], int) and shape[1] == 3 and all(isinstance(shape[i], str) for i in (0, 2, 3))
    lr = _lr(1, 17)[..., :11]
    with torch.no_grad():
        expected = net(torch.from_numpy(lr)).numpy()
    assert np.abs(session.run(None, {session.get_inputs()[0].name: lr})[0] - expected).max() <= TOLERANCE['onnx']


@pytest.mark.parametrize('fmt', ['ncnn', 'openvino'])
def test_infer_runs_each_format_with_tiles_and_keeps_image_kinds(exported, tmp_path, fmt, capsys):
    net, out = exported['srresnet']
    bgr = photo_crops(1, 30)[0]
    images = tmp_path / 'in'
    images.mkdir()
    cv2.imwrite(str(images / 'rgb.png'), bgr)
    cv2.imwrite(str(images / 'gray.png'), cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))
    cv2.imwrite(str(images / 'alpha.png'), np.dstack([bgr, np.full(bgr.shape[:2], 200, np.uint8)]))
    cv2.imwrite(str(images / 'deep.png'), bgr.astype(np.uint16) * 257)
    model = out / f'srresnet_e1_x4{SUFFIX[fmt]}'
    reference = out / 'srresnet_e1_x4.pth'
    results = {}
    for key, model_path, tile in (('whole', model, []), ('tiled', model, ['--tile', '12']), ('torch', reference, [])):
        assert infer_main(['--model', str(model_path), '--input', str(images), '--output', str(tmp_path / key),
                           '--device', 'cpu', *tile]) == 0
        results[key] = {f: cv2.imread(str(tmp_path / key / f), cv2.IMREAD_UNCHANGED) for f in os.listdir(images)}
    assert '4 of 4 images written' in capsys.readouterr().out
    for f, whole in results['whole'].items():
        # the default overlap is exact: tiles differ only by fp32 rounding (the runtime picks its convolution
        # algorithm by size), which may flip one level of a 16-bit pixel
        assert np.abs(whole.astype(np.int64) - results['tiled'][f]).max() <= 1, f
        assert whole.dtype == results['torch'][f].dtype and whole.shape == results['torch'][f].shape
        top = 65535 if whole.dtype == np.uint16 else 255  # fp32 rounding may flip one level, never more
        assert np.abs(whole.astype(np.int64) - results['torch'][f]).max() <= max(1, top * TOLERANCE[fmt]), f
    assert results['whole']['gray.png'].ndim == 2 and results['whole']['alpha.png'].shape[2] == 4


@pytest.mark.parametrize('module,fmt', [('ncnn', 'ncnn'), ('pnnx', 'ncnn'), ('openvino', 'openvino')])
def test_a_missing_runtime_names_its_pip_package(exported, tmp_path, monkeypatch, module, fmt):
    _, out = exported['srresnet']
    monkeypatch.setitem(sys.modules, module, None)  # ``import module`` raises ImportError
    ckpt = next(iter(exported['srresnet'][1].parent.glob('srresnet/models/*.pth')))
    with pytest.raises(UserError, match=f'needs the {module} package, which is not installed: pip install {module}'):
        export(str(ckpt), (fmt, ), str(tmp_path / 'o'), exits=[1])
    assert [f for f in os.listdir(tmp_path / 'o') if not f.startswith('.')] == []
    if module != 'pnnx':
        with pytest.raises(UserError, match=f'pip install {module}'):
            load_runner(str(out / f'srresnet_e1_x4{SUFFIX[fmt]}'))


def _names(folder):
    return sorted(os.listdir(folder)) if folder.exists() else []


def test_a_converter_failure_or_a_failed_check_leaves_nothing(exported, tmp_path, monkeypatch):
    ckpt = next(iter(exported['srresnet'][1].parent.glob('srresnet/models/*.pth')))
    real_run = subprocess.run

    def pnnx_fails(command, **kwargs):
        return subprocess.CompletedProcess(command, 1, '', 'ignore aten::grid_sampler_3d not supported yet\n')

    monkeypatch.setattr(ncnn_format.subprocess, 'run', pnnx_fails)
    with pytest.raises(UserError, match='pnnx could not convert the exit to ncnn .ignore aten::grid_sampler_3d'):
        export(str(ckpt), ('ncnn', ), str(tmp_path / 'o'), exits=[1])
    assert _names(tmp_path / 'o') == []
    monkeypatch.setattr(ncnn_format.subprocess, 'run', real_run)
    monkeypatch.setitem(exporter.TOLERANCE, 'ncnn', -1.0)  # converted and run, but the check fails
    monkeypatch.setitem(exporter.TOLERANCE, 'openvino', -1.0)
    for fmt in ('ncnn', 'openvino'):
        with pytest.raises(UserError, match='differs from the PyTorch exit'):
            export(str(ckpt), (fmt, ), str(tmp_path / 'o'), exits=[1])
        assert _names(tmp_path / 'o') == []  # neither file of the pair, nor a temporary one


def test_an_export_killed_between_the_two_renames_is_redone(exported, tmp_path):
    """A run killed after the new ``.bin`` was renamed but before its ``.param`` (and sidecar) leaves a pair the sidecar
    does not describe: the rerun rewrites it (and removes the dead run's temporary files) instead of keeping it."""
    ckpt = next(iter(exported['srresnet'][1].parent.glob('srresnet/models/*.pth')))
    out = tmp_path / 'o'
    export(str(ckpt), ('ncnn', ), str(out), exits=[1])
    weights = out / 'srresnet_e1_x4.ncnn.bin'
    good = weights.read_bytes()
    weights.write_bytes(good[:-4] + b'\0\0\0\0')  # another run's weights under the final name
    (out / '.srresnet_e1_x4.ncnn.partial999999999.param').write_text('half')  # a dead run's temporary file
    sidecars = export(str(ckpt), ('ncnn', ), str(out), exits=[1])
    assert weights.read_bytes() == good and sidecars[0]['max_abs_diff'] <= TOLERANCE['ncnn']
    assert _names(out) == ['srresnet_e1_x4.ncnn.bin', 'srresnet_e1_x4.ncnn.param', 'srresnet_e1_x4.ncnn.param.json']
    with pytest.raises(UserError, match='exists'):  # now complete: kept
        export(str(ckpt), ('ncnn', ), str(out), exits=[1])


def test_param_radius_refuses_what_it_cannot_bound():
    head = '7767517\n3 3\nInput in0 0 1 in0\n'
    conv = 'Convolution c 1 1 in0 a 0=8 1=3 11=3 2=1 12=1 3={s} 13={s} 5=1 6=216\n'
    assert param_radius(parse_param(head + conv.format(s=1) + 'PixelShuffle p 1 1 a b 0=2\n')) == 1
    assert param_radius(parse_param(head + conv.format(s=2) + 'PixelShuffle p 1 1 a b 0=2\n')) is None  # strided
    assert param_radius(parse_param(head + conv.format(s=1) + 'Pooling p 1 1 a b 0=0\n')) is None  # unknown layer
