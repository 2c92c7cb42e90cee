"""An ncnn model (``.param`` + ``.bin``) run with ncnn's Python package on the CPU, in fp32.

It is fed as chaiNNer's NCNN node and Real-ESRGAN-ncnn-vulkan feed theirs: one image at a time as a 3-d ``ncnn.Mat``
(c, h, w), RGB in [0, 1], into the first layer's output blob, read from the last layer's output blob (srdistill's
exports name them ``data`` and ``output``: docs/export_runtimes.md). A 4-d (1, 3, h, w) array would become a 4-d Mat
(w, h, d=3, c=1) that the convolutions read wrongly; hence the per-image 3-d Mats.

ncnn's reduced-precision options (fp16/bf16 storage and arithmetic, which it enables by default where the CPU has
them, e.g. on ARM) are turned off, so the output is the fp32 network's on every machine.
"""
import math
from os import path as osp

import numpy as np

from srdistill.inference.optional import require
from srdistill.inference.probe import probe_scale
from srdistill.utils.errors import UserError

# layers that keep the resolution and read only the same pixel of their inputs (radius = their inputs' largest)
_POINTWISE = {'Split', 'ReLU', 'PReLU', 'Clip', 'Sigmoid', 'TanH', 'Swish', 'HardSwish', 'HardSigmoid', 'GELU', 'ELU',
              'BinaryOp', 'Eltwise', 'UnaryOp', 'Noop', 'Scale', 'Bias', 'Dropout', 'BatchNorm', 'Power', 'Exp', 'Log',
              'Concat', 'Crop'}
_INTERP_REACH = {1: 0, 2: 1, 3: 2}  # nearest, bilinear, bicubic: input pixels read on each side


def parse_param(text):
    """The layers of an ncnn ``.param`` text: ``[(type, name, inputs, outputs, {key: value string})]``."""
    lines = text.split('\n')
    if not lines or lines[0].strip() != '7767517':
        raise ValueError('not an ncnn .param file (its first line is not the magic number 7767517)')
    layers = []
    for line in lines[2:]:
        fields = line.split()
        if not fields:
            continue
        n_in, n_out = int(fields[2]), int(fields[3])
        inputs, outputs = fields[4:4 + n_in], fields[4 + n_in:4 + n_in + n_out]
        params = dict(f.split('=', 1) for f in fields[4 + n_in + n_out:])
        layers.append((fields[0], fields[1], inputs, outputs, params))
    return layers


def param_radius(layers):
    """Receptive-field radius, in input pixels, of the last layer's output, read from the layer list; None when a
    layer is not a stride-1 convolution, an upscaling (pixel shuffle, interpolation) or a pointwise layer.

    Each blob carries its scale (against the input) and its radius; a convolution of kernel ``k`` and dilation ``d``
    adds ``(k // 2) * d`` pixels of its own resolution, i.e. that divided by its scale in input pixels; the longest
    path wins. For MSRResNet and EDSR this gives their architectures' ``receptive_radius`` (an upper bound in general,
    so tiles with twice this overlap are exact).
    """
    blobs = {}  # name -> (scale, radius)
    for kind, _, inputs, outputs, params in layers:
        if kind in ('Input', 'MemoryData'):  # MemoryData: a constant (EDSR's RGB mean), at no resolution of its own
            blobs.update({o: (1.0 if kind == 'Input' else 0.0, 0.0) for o in outputs})
            continue
        if not inputs or any(i not in blobs for i in inputs):
            return None
        scale, radius = max(blobs[i][0] for i in inputs), max(blobs[i][1] for i in inputs)
        if kind in ('Convolution', 'ConvolutionDepthWise'):
            if params.get('3', '1') != '1' or params.get('13', params.get('3', '1')) != '1':
                return None  # a strided convolution: not an SR chain
            kernel = max(int(params.get('1', '0')), int(params.get('11', params.get('1', '0'))))
            dilation = max(int(params.get('2', '1')), int(params.get('12', params.get('2', '1'))))
            radius += (kernel // 2) * dilation / scale
        elif kind == 'PixelShuffle':
            scale *= int(params.get('0', '1'))
        elif kind == 'Interp':
            factor = float(params.get('1', '0'))
            if factor < 1 or float(params.get('2', '0')) != factor or int(params.get('0', '0')) not in _INTERP_REACH:
                return None  # a fixed output size or a downscaling
            radius += _INTERP_REACH[int(params['0'])] / scale
            scale *= factor
        elif kind not in _POINTWISE:
            return None
        blobs.update({o: (scale, radius) for o in outputs})
    last = layers[-1][3][0] if layers and layers[-1][3] else None
    return math.ceil(blobs[last][1] - 1e-9) if last in blobs else None


class NcnnRunner:
    """An ncnn model on the CPU, fp32; ``scale`` from a probe, ``radius`` from its layer list (:func:`param_radius`).

    Args:
        path (str): The ``.param`` file.
        bin_path (str | None): Its weights. Default: ``path`` with ``.param`` replaced by ``.bin`` (as chaiNNer and
            Real-ESRGAN-ncnn-vulkan find them).
    """

    def __init__(self, path, bin_path=None):
        self.ncnn = require('ncnn', f'running the ncnn model {path}')
        bin_path = bin_path or f'{path[:-len(".param")] if path.endswith(".param") else path}.bin'
        if not osp.isfile(bin_path):
            raise UserError(f'{path}: its weights {bin_path} are missing; keep the .param and .bin files together.')
        try:
            with open(path, encoding='utf-8') as f:
                layers = parse_param(f.read())
        except (OSError, UnicodeDecodeError, ValueError, IndexError) as err:
            raise UserError(f'{path} is not a readable ncnn .param file ({err}).') from None
        if not layers or not layers[0][3] or not layers[-1][3]:
            raise UserError(f'{path} has no layers with outputs: not an ncnn model.')
        self.input, self.output = layers[0][3][0], layers[-1][3][0]  # chaiNNer's choice of blobs, too
        self.net = self.ncnn.Net()
        for name in ('use_vulkan_compute', 'use_fp16_packed', 'use_fp16_storage', 'use_fp16_arithmetic',
                     'use_bf16_storage', 'use_int8_inference'):
            if hasattr(self.net.opt, name):
                setattr(self.net.opt, name, False)
        if self.net.load_param(path) != 0 or self.net.load_model(bin_path) != 0:
            raise UserError(f'ncnn cannot load {path} with {bin_path} (a layer it does not know, or weights that do '
                            'not match the .param); export it again.')
        self.radius = param_radius(layers)
        self.scale = probe_scale(lambda x: self(x, clip=False), path)

    def __call__(self, batch, clip=True):
        """float32 RGB (N, 3, h, w) in [0, 1] -> (N, 3, h * s, w * s), one 3-d Mat per image."""
        outs = []
        for img in batch:
            img = np.ascontiguousarray(img, dtype=np.float32)  # the Mat reads this memory: keep it alive
            with self.net.create_extractor() as ex:
                ex.input(self.input, self.ncnn.Mat(img))
                ret, out = ex.extract(self.output)
                if ret != 0:
                    raise RuntimeError(f'ncnn: extracting blob {self.output} failed ({ret})')
                outs.append(np.array(out, dtype=np.float32))
        out = np.stack(outs)
        return np.clip(out, 0, 1, out=out) if clip else out
