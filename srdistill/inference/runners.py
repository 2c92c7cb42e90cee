"""Models to run on users' images: an exported file (pth, safetensors, ONNX, TorchScript, OpenVINO IR, ncnn) or a
checkpoint and an exit. The OpenVINO and ncnn runners have their own modules (``openvino_runner``, ``ncnn_runner``).

Every runner maps a float32 RGB batch (N, 3, h, w) in [0, 1] to its SR batch (N, 3, h * s, w * s), float32 in
[0, 1], on the CPU; it has ``scale`` (s) and ``radius``, the receptive-field radius in LR pixels that exact tiles need
(the architecture's ``receptive_radius``; None when no registered architecture recognises the weights). Tiling is the
caller's
(:func:`~srdistill.inference.images.upscale_image`), one tile on the device at a time.

Weights are data in ``.pth`` (read with ``weights_only=True``), ``.safetensors`` and ONNX files; a TorchScript file
is a program (its ``forward`` and ``__setstate__`` run its own code, which can read and write files), so it is loaded
only when the user says they trust it. Non-finite weights (a run that diverged) are refused in every format.
"""
import warnings
import zipfile
from os import path as osp

import numpy as np
import torch

from srdistill.archs.checkpoints import (
    check_finite,
    choose_weights,
    network_from_state_dict,
    read_checkpoint,
    stored_network_opt,
)
from srdistill.archs.multi_exit import build_network, network_opt_from_state_dict
from srdistill.export.formats import JIT_DEPRECATION
from srdistill.inference.probe import probe_scale
from srdistill.utils.amp import AMP_DTYPES
from srdistill.utils.errors import UserError, first_line

PRECISIONS = {'fp32': torch.float32, **AMP_DTYPES}


def _radius(state):
    """Receptive-field radius of the registered network whose weights (by name) are ``state``; None for another."""
    opt = network_opt_from_state_dict(state)
    if opt is None:
        return None
    with torch.device('meta'):
        return build_network(opt).receptive_radius()


def _onnx_radius(weights):
    """:func:`_radius` of the weights an ONNX file stores, which are not quite the network's parameters.

    - An INT8 (QDQ) export stores parameter ``X`` as ``X_quantized`` (same shape), beside its scales and zero points
      (``X_scale``, ``X_zero_point``, ``X_quantized_scale``, ...), which are not parameters.
    - The exporter drops a convolution's bias when it is all zero (as BasicSR initialises many, so in an untrained
      network); a missing ``<conv>.bias`` of a 4-d ``<conv>.weight`` is put back as zeros when the weights as stored
      are not recognised.
    """
    suffix = '_quantized'
    named = {k[:-len(suffix)]: v for k, v in weights.items() if k.endswith(suffix)} or weights
    radius = _radius(named)
    if radius is None:
        biases = {f'{k[:-len("weight")]}bias': torch.zeros(v.shape[0]) for k, v in named.items()
                  if k.endswith('.weight') and v.dim() == 4}
        radius = _radius(dict(biases, **named))
    return radius


class TorchRunner:
    """A PyTorch network (optionally one exit of a multi-exit network), on CPU or CUDA, in fp32/fp16/bf16.

    ``radius`` defaults to the network's own ``receptive_radius`` (of ``exit_depth``), else None (unknown).
    """

    def __init__(self, net, scale, device, precision='fp32', exit_depth=None, channels_last=True, radius=None):
        if precision != 'fp32' and torch.device(device).type != 'cuda':
            raise UserError(f'--precision {precision} needs a CUDA device; on CPU use fp32.')
        # channels_last: faster than the default layout on the benchmark CPU (docs/speed.md)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.net = net.to(device=device, dtype=PRECISIONS[precision], memory_format=self.memory_format).eval()
        self.scale, self.device, self.dtype, self.exit = scale, torch.device(device), PRECISIONS[precision], exit_depth
        if radius is None and hasattr(net, 'receptive_radius'):
            radius = net.receptive_radius(exit_depth)
        self.radius = radius

    def _forward(self, x):
        return self.net(x) if self.exit is None else self.net(x, exit=self.exit)

    @torch.no_grad()
    def __call__(self, batch):
        x = torch.from_numpy(batch).to(self.device, self.dtype).contiguous(memory_format=self.memory_format)
        return self._forward(x).float().clamp_(0, 1).cpu().numpy()


class OnnxRunner:
    """An exported ONNX model run with ONNX Runtime (CUDA provider when available, else CPU)."""

    def __init__(self, path):
        import onnx
        import onnxruntime as ort
        from onnx import numpy_helper
        providers = [p for p in ('CUDAExecutionProvider', 'CPUExecutionProvider') if p in ort.get_available_providers()]
        try:
            self.session = ort.InferenceSession(path, providers=providers)
        except Exception as err:  # noqa: BLE001 (ORT raises its own exception types)
            raise UserError(f'{path} is not a loadable ONNX model ({first_line(err, 160)}).') from None
        # the weights stored in the file itself (external data is never read here), by name, for their check and for
        # the network's receptive field (srdistill's exports keep the parameter names of their standalone network)
        weights = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy())
                   for t in onnx.load(path, load_external_data=False).graph.initializer
                   if t.data_location != onnx.TensorProto.EXTERNAL}
        check_finite(weights, path)
        self.radius = _onnx_radius(weights)
        self.input = self.session.get_inputs()[0].name
        self.scale = probe_scale(lambda x: self.session.run(None, {self.input: x})[0], path)

    def __call__(self, batch):
        try:
            out = self.session.run(None, {self.input: batch})[0]
        except Exception as err:  # noqa: BLE001 (ORT's exception types derive from Exception only)
            raise RuntimeError(f'ONNX Runtime: {first_line(err)}') from err
        return np.clip(out, 0, 1, out=out)


def is_torchscript(path):
    """Whether ``path`` is a TorchScript archive, whatever its name (torch's own test: a zip with ``constants.pkl``)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(osp.basename(name) == 'constants.pkl' for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


class TorchScriptRunner(TorchRunner):
    """An exported TorchScript module (``*.torchscript.pt``); only for files the user trusts (it is a program)."""

    def __init__(self, path, device, precision='fp32'):
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings('ignore', message=JIT_DEPRECATION, category=FutureWarning)
                module = torch.jit.load(path, map_location='cpu')
        except Exception as err:  # noqa: BLE001
            raise UserError(f'{path} is not a loadable TorchScript module ({first_line(err, 160)}).') from None
        state = module.state_dict()
        check_finite(state, path)
        with torch.no_grad():
            scale = module(torch.zeros(1, 3, 8, 8)).shape[2] // 8
        super().__init__(module, scale, device, precision, radius=_radius(state))


def refuse_torchscript(path):
    """The one-line refusal of a TorchScript file the user has not said they trust."""
    return UserError(f'{path} is a TorchScript file, which is a program: loading and running it runs its own code, '
                     'which can read and write your files. Pass --trust-torchscript only if you trust where it came '
                     'from; otherwise use a data format: .safetensors or .onnx (tools/export.py --format safetensors '
                     'onnx).')


def _openvino(path):
    from srdistill.inference.openvino_runner import OpenVinoRunner
    return OpenVinoRunner(path)


def _ncnn(path):
    from srdistill.inference.ncnn_runner import NcnnRunner
    return NcnnRunner(path)


def load_runner(model, exit_depth=None, device='cpu', precision='fp32', param_key='params', trust_torchscript=False):
    """A runner for ``model``: ``.onnx``, ``*.torchscript.pt``, ``.safetensors``, an OpenVINO ``.xml``, an ncnn
    ``.param``, or a ``.pth`` (an exported exit, a plain BasicSR network, or a multi-exit checkpoint with
    ``exit_depth``; without it the final output is used).

    A TorchScript file (by name or by content) is refused unless ``trust_torchscript``; weights holding inf/nan are
    refused in every format.
    """
    if not osp.isfile(model):
        raise UserError(f'model {model} does not exist.')
    one_exit = {'.onnx': ('an ONNX file', OnnxRunner), '.xml': ('an OpenVINO model', _openvino),
                '.param': ('an ncnn model', _ncnn)}.get(osp.splitext(model)[1].lower())
    if one_exit:
        if exit_depth is not None:
            raise UserError(f'--exit applies to multi-exit checkpoints; {one_exit[0]} is already one exit.')
        return one_exit[1](model)
    if model.endswith('.torchscript.pt') or (not model.endswith('.safetensors') and is_torchscript(model)):
        if not trust_torchscript:
            raise refuse_torchscript(model)
        return TorchScriptRunner(model, device, precision)
    if model.endswith('.safetensors'):
        from safetensors.torch import load_file
        try:
            state = load_file(model)
        except Exception as err:  # noqa: BLE001
            raise UserError(f'{model} is not a loadable safetensors file ({first_line(err, 160)}).') from None
        check_finite(state, model)
        stored = None
    else:
        states, stored = read_checkpoint(model)
        state = choose_weights(states, param_key)
    # what the weights cannot say (e.g. EDSR's res_scale): an export's own metadata, else the run's options file
    net, opt = network_from_state_dict(state, model, extra=stored_network_opt(model, stored))
    if exit_depth is not None and not hasattr(net, 'depths'):
        raise UserError(f'--exit {exit_depth}: {model} is one exported exit, not a multi-exit checkpoint; omit --exit.')
    if exit_depth is not None and exit_depth not in net.depths:
        raise UserError(f'--exit {exit_depth}: {model} has no such output; it has {list(net.depths)}.')
    return TorchRunner(net, opt['upscale'], device, precision, exit_depth)
