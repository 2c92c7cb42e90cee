"""The ``ncnn`` export: ``<name>.ncnn.param`` + ``<name>.ncnn.bin``, converted by pnnx and run back with ncnn.

- Conversion: the exit is traced (TorchScript) and converted by pnnx's own executable (``pip install pnnx``; it is
  Tencent's converter that ncnn's documentation recommends), with ``fp16=0``: pnnx stores fp16 weights by default,
  which alone moves the output by ~1e-3. The ncnn graph has no fixed input size (tested at sizes other than the
  traced one).
- Graph (:mod:`~srdistill.export.ncnn_graph`): the input blob is renamed ``data`` and the output blob ``output``
  (pnnx writes ``in0``/``out0``), the names Real-ESRGAN-ncnn-vulkan (and upscayl, which runs it) and chaiNNer's early
  NCNN node (chaiNNer #1328) ask for; today's chaiNNer takes the first layer's and the last layer's blobs, which these
  stay. EDSR's mean-shift constants become 1x1 convolutions (chaiNNer refuses ``MemoryData`` layers).
- Check: :class:`~srdistill.inference.ncnn_runner.NcnnRunner` runs the pair on the check image, fed as those tools
  feed it (3-d Mat, RGB in [0, 1]).
"""
import subprocess
import tempfile
import warnings
from os import path as osp

import torch

from srdistill.export.ncnn_graph import fold_channel_constants, rename_blobs
from srdistill.inference.ncnn_runner import NcnnRunner, parse_param
from srdistill.inference.optional import require
from srdistill.utils.errors import UserError

INPUT_BLOB, OUTPUT_BLOB = 'data', 'output'
_JIT_WARNING = r'`torch\.jit\.\w+` is deprecated'


def _convert(net, check, folder):
    """Trace ``net`` and run pnnx in ``folder``; returns the (param, bin) paths it wrote."""
    pnnx = require('pnnx', '--format ncnn')
    traced = osp.join(folder, 'exit.pt')
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings('ignore', message=_JIT_WARNING, category=FutureWarning)
        torch.jit.trace(net, check).save(traced)
    param, weights = osp.join(folder, 'exit.ncnn.param'), osp.join(folder, 'exit.ncnn.bin')
    shape = ','.join(str(d) for d in check.shape)
    # every output pnnx would write is named inside ``folder`` (it otherwise writes beside the cwd's model name)
    command = [pnnx.EXEC_PATH, traced, f'inputshape=[{shape}]f32', 'device=cpu', 'fp16=0', f'ncnnparam={param}',
               f'ncnnbin={weights}'] + [f'{k}={osp.join(folder, "exit" + v)}' for k, v in
                                        (('pnnxparam', '.pnnx.param'), ('pnnxbin', '.pnnx.bin'),
                                         ('pnnxpy', '_pnnx.py'), ('pnnxonnx', '.pnnx.onnx'), ('ncnnpy', '_ncnn.py'))]
    done = subprocess.run(command, capture_output=True, text=True, cwd=folder)
    if done.returncode != 0 or not (osp.isfile(param) and osp.isfile(weights)):
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or [f'exit status {done.returncode}']
        raise UserError(f'pnnx could not convert the exit to ncnn ({tail[0][:200]}); nothing was written.')
    return param, weights


def _unsupported_layers(ncnn, layers):
    """``type name`` of each layer ncnn has no implementation of (an operator pnnx passed through unconverted)."""
    return [f'{kind} {name}' for kind, name, *_ in layers if ncnn.layer_to_index(kind) < 0]


def write_ncnn(path, weights, net, check, reference):
    """Convert ``net`` to ``path`` (``.ncnn.param``) and ``weights`` (its ``.bin``), run the pair with ncnn on
    ``check`` and return the max |difference| from ``reference``.

    Raises:
        UserError: pnnx fails, or leaves a layer that ncnn cannot run (the message names it).
    """
    from srdistill.export.formats import _diff
    ncnn = require('ncnn', '--format ncnn')
    with tempfile.TemporaryDirectory(prefix='srdistill-pnnx-') as folder:
        param, converted = _convert(net, check, folder)
        with open(param, encoding='utf-8') as f:
            text = f.read()
        layers = parse_param(text)
        missing = _unsupported_layers(ncnn, layers)
        if missing:
            raise UserError(f'pnnx left layer {missing[0]} unconverted (ncnn has no such layer; {len(missing)} in '
                            'all); this exit cannot run in ncnn, nothing was written.')
        with open(converted, 'rb') as f:
            text, data = fold_channel_constants(text, f.read())
        with open(path, 'w', encoding='utf-8') as f:
            f.write(rename_blobs(text, {layers[0][3][0]: INPUT_BLOB, layers[-1][3][0]: OUTPUT_BLOB}))
        with open(weights, 'wb') as f:
            f.write(data)
    return _diff(NcnnRunner(path, weights)(check.numpy(), clip=False), reference)
