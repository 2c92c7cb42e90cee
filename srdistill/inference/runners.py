"""Models to run on users' images: an exported file (pth, safetensors, ONNX, TorchScript) or a checkpoint and an exit.

Every runner maps a float32 RGB batch (N, 3, h, w) in [0, 1] to its SR batch (N, 3, h * s, w * s), tiled when asked.
"""
import warnings
from os import path as osp

import numpy as np
import torch

from srdistill.archs.multi_exit_srresnet_arch import MultiExitSRResNet
from srdistill.evaluation.checkpoints import infer_network_opt, load_checkpoint
from srdistill.export.formats import JIT_DEPRECATION
from srdistill.utils.errors import UserError
from srdistill.utils.tiling import tiled_forward

PRECISIONS = {'fp32': torch.float32, 'fp16': torch.float16, 'bf16': torch.bfloat16}


class TorchRunner:
    """A PyTorch network (optionally one exit of a multi-exit network), on CPU or CUDA, in fp32/fp16/bf16."""

    def __init__(self, net, scale, device, precision='fp32', exit_depth=None, channels_last=True):
        if precision != 'fp32' and torch.device(device).type != 'cuda':
            raise UserError(f'--precision {precision} needs a CUDA device; on CPU use fp32.')
        # channels_last: 1.24-1.37x faster than the default layout on the benchmark CPU (docs/speed.md)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.net = net.to(device=device, dtype=PRECISIONS[precision], memory_format=self.memory_format).eval()
        self.scale, self.device, self.dtype, self.exit = scale, torch.device(device), PRECISIONS[precision], exit_depth

    def _forward(self, x):
        return self.net(x) if self.exit is None else self.net(x, exit=self.exit)

    @torch.no_grad()
    def __call__(self, batch, tile=None, overlap=32):
        x = torch.from_numpy(batch).to(self.device, self.dtype).contiguous(memory_format=self.memory_format)
        return tiled_forward(self._forward, x, self.scale, tile, overlap).float().clamp_(0, 1).cpu().numpy()


class OnnxRunner:
    """An exported ONNX model run with ONNX Runtime (CUDA provider when available, else CPU)."""

    def __init__(self, path):
        import onnxruntime as ort
        providers = [p for p in ('CUDAExecutionProvider', 'CPUExecutionProvider') if p in ort.get_available_providers()]
        try:
            self.session = ort.InferenceSession(path, providers=providers)
        except Exception as err:  # noqa: BLE001 (ORT raises its own exception types)
            raise UserError(f'{path} is not a loadable ONNX model ({str(err).splitlines()[0][:160]}).') from None
        self.input = self.session.get_inputs()[0].name
        probe = np.zeros((1, 3, 8, 8), np.float32)
        self.scale = self.session.run(None, {self.input: probe})[0].shape[2] // 8

    def __call__(self, batch, tile=None, overlap=32):
        def run(x):
            return torch.from_numpy(self.session.run(None, {self.input: x.numpy()})[0])

        return tiled_forward(run, torch.from_numpy(batch), self.scale, tile, overlap).clamp_(0, 1).numpy()


class TorchScriptRunner(TorchRunner):
    """An exported TorchScript module (``*.torchscript.pt``)."""

    def __init__(self, path, device, precision='fp32'):
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings('ignore', message=JIT_DEPRECATION, category=FutureWarning)
                module = torch.jit.load(path, map_location='cpu')
        except Exception as err:  # noqa: BLE001
            reason = str(err).splitlines()[0][:160]
            raise UserError(f'{path} is not a loadable TorchScript module ({reason}).') from None
        with torch.no_grad():
            scale = module(torch.zeros(1, 3, 8, 8)).shape[2] // 8
        super().__init__(module, scale, device, precision)


def load_runner(model, exit_depth=None, device='cpu', precision='fp32', param_key='params'):
    """A runner for ``model``: ``.onnx``, ``*.torchscript.pt``, ``.safetensors``, or a ``.pth`` (an exported exit, a
    plain MSRResNet, or a multi-exit checkpoint with ``exit_depth``; without it the final output is used).
    """
    if not osp.isfile(model):
        raise UserError(f'model {model} does not exist.')
    if model.endswith('.onnx'):
        if exit_depth is not None:
            raise UserError('--exit applies to multi-exit checkpoints; an ONNX file is already one exit.')
        return OnnxRunner(model)
    if model.endswith('.torchscript.pt'):
        return TorchScriptRunner(model, device, precision)
    if model.endswith('.safetensors'):
        from safetensors.torch import load_file
        try:
            state = load_file(model)
        except Exception as err:  # noqa: BLE001
            raise UserError(f'{model} is not a loadable safetensors file ({str(err)[:160]}).') from None
        opt = infer_network_opt(state, model)
        net = MultiExitSRResNet(**{k: v for k, v in opt.items() if k != 'type'})
        net.load_state_dict(state, strict=True)
        return TorchRunner(net, opt['upscale'], device, precision)
    net, opt = load_checkpoint(model, param_key=param_key)
    if exit_depth is not None and exit_depth not in net.depths:
        raise UserError(f'--exit {exit_depth}: {model} has no such output; it has {list(net.depths)}.')
    return TorchRunner(net, opt['upscale'], device, precision, exit_depth)

