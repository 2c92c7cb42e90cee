"""Rewrites of a pnnx-converted ncnn graph (``.param`` text + ``.bin`` bytes) so that SR tools accept it.

- :func:`rename_blobs`: the input and output blob names those tools ask for (``data``, ``output``).
- :func:`fold_channel_constants`: EDSR's RGB-mean shift becomes, in pnnx's graph, a ``MemoryData`` constant added to
  or subtracted from the image by ``BinaryOp`` layers. chaiNNer's NCNN model reader refuses any ``MemoryData`` layer
  ("This NCNN param file contains invalid layers"), so each such operation is rewritten as a 1x1 ``Convolution``
  with identity weights and the constant as bias (a 1x1 convolution has no padding: exact, and a layer every ncnn
  reader knows).
"""
import struct

import numpy as np

from srdistill.inference.ncnn_runner import parse_param

_FP32_TAG = b'\0\0\0\0'  # ncnn's weight tag of plain float32 data (pnnx writes it with fp16=0)
_WEIGHTLESS = {'Input', 'Split', 'BinaryOp', 'PixelShuffle', 'Interp', 'ReLU', 'Clip', 'Sigmoid', 'TanH', 'Crop',
               'Concat', 'Eltwise', 'Noop', 'Swish', 'HardSwish', 'HardSigmoid', 'GELU', 'ELU', 'UnaryOp'}


def _line(kind, name, inputs, outputs, params):
    return ' '.join([kind, name, str(len(inputs)), str(len(outputs)), *inputs, *outputs,
                     *(f'{k}={v}' for k, v in params.items())])


def _text(layers_lines, blobs):
    return '\n'.join(['7767517', f'{len(layers_lines)} {len(blobs)}', *layers_lines]) + '\n'


def rename_blobs(text, names):
    """``.param`` text with blobs renamed by ``names`` (``{old: new}``); an ``Input`` layer takes its blob's new name.

    Raises:
        ValueError: A new name is already a blob of the graph.
    """
    layers = parse_param(text)
    taken = {b for _, _, ins, outs, _ in layers for b in ins + outs}
    clash = [new for old, new in names.items() if new in taken and new != old]
    if clash:
        raise ValueError(f'blob {clash[0]} exists already')
    lines = []
    for kind, name, ins, outs, params in layers:
        outs = [names.get(b, b) for b in outs]
        lines.append(_line(kind, outs[0] if kind == 'Input' else name, [names.get(b, b) for b in ins], outs, params))
    return _text(lines, taken)


def _weight_bytes(kind, params):
    """Bytes of a layer's weights in the ``.bin`` (fp32), or None for a layer this module does not know."""
    if kind in ('Convolution', 'ConvolutionDepthWise'):
        out = int(params.get('0', '0'))
        return 4 + 4 * int(params.get('6', '0')) + (4 * out if params.get('5', '0') == '1' else 0)
    if kind == 'MemoryData':
        return 4 * int(np.prod([int(params[k]) for k in ('0', '1', '2', '11') if int(params.get(k, '0')) > 0]))
    return 0 if kind in _WEIGHTLESS else None


def _conv1x1(name, blob_in, blob_out, gain, bias):
    """A 1x1 Convolution line and its weights: ``y[c] = gain[c] * x[c] + bias[c]``."""
    channels = len(bias)
    weights = np.diag(np.asarray(gain, np.float32)).reshape(-1)
    line = _line('Convolution', name, [blob_in], [blob_out],
                 {'0': channels, '1': 1, '11': 1, '5': 1, '6': channels * channels})
    return line, _FP32_TAG + weights.astype('<f4').tobytes() + np.asarray(bias, '<f4').tobytes()


def fold_channel_constants(text, weights):
    """Rewrite ``x + m``, ``x - m`` and ``x * m`` with a per-channel ``MemoryData`` constant ``m`` (through ``Split``
    layers) as 1x1 convolutions, and drop the constants.

    Args:
        text (str): The ``.param`` text.
        weights (bytes): The ``.bin`` contents.

    Returns:
        tuple[str, bytes]: The rewritten pair; the inputs unchanged when the graph has no such constant, holds a layer
        whose weights this module cannot size, or uses a constant in another way.
    """
    layers = parse_param(text)
    sizes = [_weight_bytes(kind, params) for kind, _, _, _, params in layers]
    if 'MemoryData' not in {kind for kind, *_ in layers} or None in sizes or sum(sizes) != len(weights):
        return text, weights
    offsets = np.cumsum([0] + sizes)
    constants, dropped = {}, set()  # blob -> per-channel values; indices of the layers that go
    for i, (kind, _, ins, outs, params) in enumerate(layers):
        if kind == 'MemoryData' and int(params.get('0', '0')) <= 1 and int(params.get('1', '0')) <= 1:
            values = struct.unpack(f'<{sizes[i] // 4}f', weights[offsets[i]:offsets[i + 1]])
            constants[outs[0]] = np.array(values, np.float32)
            dropped.add(i)
        elif kind == 'Split' and ins[0] in constants:
            constants.update({o: constants[ins[0]] for o in outs})
            dropped.add(i)
    lines, blobs, chunks = [], set(), []
    for i, (kind, name, ins, outs, params) in enumerate(layers):
        if i in dropped:
            continue
        used = [b for b in ins if b in constants]
        if used:
            op = params.get('0', '0')
            if kind != 'BinaryOp' or len(ins) != 2 or len(used) != 1 or op not in ('0', '1', '2') or (
                    op == '1' and ins[1] not in constants):
                return text, weights  # a constant used otherwise: leave the graph as pnnx wrote it
            x, m = (ins[0], constants[ins[1]]) if ins[1] in constants else (ins[1], constants[ins[0]])
            gain, bias = (m, np.zeros_like(m)) if op == '2' else (np.ones_like(m), -m if op == '1' else m)
            line, chunk = _conv1x1(name, x, outs[0], gain, bias)
        else:
            line, chunk = _line(kind, name, ins, outs, params), weights[offsets[i]:offsets[i + 1]]
        lines.append(line)
        chunks.append(chunk)
        blobs.update(ins + outs)
    return _text(lines, blobs), b''.join(chunks)
