"""Writers for the export formats. Each writes a (temporary) file, loads it back, runs it on a check image and returns
the largest absolute difference from the PyTorch exit's output; :func:`write_checked` renames the file into place only
when that difference is within tolerance.

- ``pth``: BasicSR checkpoint layout, ``{'params': ..., 'params_ema': ...}``, loadable with ``strict=True`` by the
  exit's standalone network (its architecture's ``exit_network_opt``: with the full head, BasicSR's own network of
  ``k`` blocks) and by BasicSR's ``pretrain_network_g``; its JSON sidecar holds the standalone network's options;
- ``safetensors``: the same weights, without pickle; its metadata holds the standalone network's options;
- ``onnx``: dynamic batch, height and width, opset :data:`ONNX_OPSET`, checked with ``onnx.checker`` and run with
  ONNX Runtime;
- ``torchscript``: a traced module (``torch.jit.load`` needs no srdistill/BasicSR code);
- ``ncnn`` (:mod:`~srdistill.export.ncnn_format`) and ``openvino`` (:mod:`~srdistill.export.openvino_format`): a pair
  of files each (:data:`COMPANIONS`), renamed into place together by :func:`write_checked`.
"""
import math
import os
import warnings
from os import path as osp

import numpy as np
import torch

from srdistill.archs.multi_exit import build_network
from srdistill.utils.errors import UserError
from srdistill.utils.partial_files import partial_path

ONNX_OPSET = 18
JIT_DEPRECATION = r'`torch\.jit\.\w+` is deprecated'  # torch >= 2.14 warns on every TorchScript call
SUFFIXES = {'pth': '.pth', 'safetensors': '.safetensors', 'onnx': '.onnx', 'torchscript': '.torchscript.pt',
            'ncnn': '.ncnn.param', 'openvino': '.openvino.xml'}
# the second file of a two-file format (its weights); named apart (.ncnn.bin, .openvino.bin) so the two never collide
COMPANIONS = {'ncnn': '.ncnn.bin', 'openvino': '.openvino.bin'}


def companion_path(path, fmt):
    """The weights file written beside ``path`` (an export in format ``fmt``), or None for a one-file format."""
    return path[:-len(SUFFIXES[fmt])] + COMPANIONS[fmt] if fmt in COMPANIONS else None


def write_checked(path, write, tolerance, companions=()):
    """Call ``write(tmp) -> max |diff|`` and move ``tmp`` to ``path`` if the difference is within ``tolerance``.

    Nothing is left behind when writing or checking fails. Returns the difference.

    ``companions``: final paths of files written beside ``path`` (e.g. ncnn's ``.bin`` beside its ``.param``);
    ``write`` is then called as ``write(tmp, *companion_tmps)``. They are renamed before ``path``, so
    ``path`` appears last; the exporter's sidecar (written after) records every file's hash, so a run killed between
    two renames is recognised as incomplete and redone.

    Raises:
        UserError: The written model differs from the PyTorch exit by more than ``tolerance``, or the difference is
            not finite (NaN or infinite output, on either side: ``nan > tolerance`` is False, so it is tested first).
    """
    tmp = partial_path(path)  # hidden, and removed by the next run if this one is killed (utils/partial_files.py)
    pending = [(partial_path(c), c) for c in companions] + [(tmp, path)]
    try:
        diff = write(*(written for written, _ in pending[-1:] + pending[:-1]))
        if not math.isfinite(diff):
            raise UserError(f'{osp.basename(path)} gives non-finite output ({diff}) on the check image; nothing was '
                            'written. Its weights are not finite or overflow: export a checkpoint from before the '
                            'training diverged.')
        if diff > tolerance:
            raise UserError(f'{osp.basename(path)} differs from the PyTorch exit by {diff:.2e} (> {tolerance:g}); '
                            'nothing was written. Please report this.')
        for written, final in pending:
            os.replace(written, final)
        return diff
    finally:
        for written, _ in pending:
            if osp.exists(written):
                os.remove(written)


def _diff(a, b):
    return float(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)).max())


def _standalone(multi, depth, state):
    """The exit's standalone network (through ``ARCH_REGISTRY``) with ``state`` loaded strictly, as a user would."""
    net = build_network(multi.exit_network_opt(depth))
    net.load_state_dict(state, strict=True)
    return net.eval()


def write_pth(path, multi, states, depth, check, reference):
    """``states``: ``{'params': state_dict, 'params_ema': state_dict?}`` of the multi-exit network ``multi``."""
    payload = {key: multi.exit_state_dict(depth, state) for key, state in states.items()}
    payload['network'] = multi.exit_network_opt(depth)  # what the weights cannot say (e.g. EDSR's res_scale)
    torch.save(payload, path)
    loaded = torch.load(path, map_location='cpu', weights_only=True)
    with torch.no_grad():
        return _diff(_standalone(multi, depth, loaded['params'])(check), reference)


def write_safetensors(path, multi, state, depth, check, reference, metadata):
    from safetensors.torch import load_file, save_file

    weights = {k: v.contiguous() for k, v in multi.exit_state_dict(depth, state).items()}
    save_file(weights, path, metadata={k: str(v) for k, v in metadata.items()})
    with torch.no_grad():
        return _diff(_standalone(multi, depth, load_file(path))(check), reference)


def write_onnx(path, net, check, reference):
    import onnx
    import onnxruntime as ort

    dims = {0: torch.export.Dim('batch'), 2: torch.export.Dim('height'), 3: torch.export.Dim('width')}

    torch.onnx.export(net, (check, ), path, input_names=['lr'], output_names=['sr'], opset_version=ONNX_OPSET,
                      dynamo=True, dynamic_shapes=(dims, ), external_data=False, verbose=False)
    onnx.checker.check_model(onnx.load(path))
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    return _diff(session.run(None, {'lr': check.numpy()})[0], reference)


def write_torchscript(path, net, check, reference):
    """TorchScript is deprecated from torch 2.14 on (``torch.jit.trace`` warns) but still the format many C++ and
    mobile runtimes load; the warning is silenced here, where it is known."""
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings('ignore', message=JIT_DEPRECATION, category=FutureWarning)
        traced = torch.jit.trace(net, check)
        traced.save(path)
        loaded = torch.jit.load(path, map_location='cpu')
    with torch.no_grad():
        return _diff(loaded(check), reference)
