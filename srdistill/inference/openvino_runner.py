"""An OpenVINO IR model (``.xml`` + ``.bin``) run with OpenVINO's runtime on the CPU, in fp32.

The CPU plugin's default ``INFERENCE_PRECISION_HINT`` is bf16 on CPUs that have bf16 instructions (AVX512-BF16, AMX)
and f16 on ARM: it runs an fp32 model in reduced precision, 1e-2 away from PyTorch on the issue's tiny
network. The hint is set to f32 here, which makes the output PyTorch's to 1e-6 (docs/export_runtimes.md).
"""
import numpy as np

from srdistill.inference.optional import require
from srdistill.inference.probe import probe_scale
from srdistill.utils.errors import UserError, first_line

CPU_CONFIG = {'INFERENCE_PRECISION_HINT': 'f32'}
RT_INFO = 'srdistill'  # rt_info section the exporter writes into the IR: receptive_radius, scale, network


def read_rt_info(model, key):
    """``model``'s ``rt_info[srdistill][key]`` as a string, or None when the IR has none (not srdistill's export)."""
    if not model.has_rt_info([RT_INFO, key]):
        return None
    return model.get_rt_info([RT_INFO, key]).astype(str)


class OpenVinoRunner:
    """An OpenVINO IR on the CPU with f32 inference; ``radius`` as the exporter wrote it into the IR, else None.

    Args:
        path (str): The ``.xml`` file; its weights are the ``.bin`` of the same name (OpenVINO's rule).
    """

    def __init__(self, path):
        ov = require('openvino', f'running the OpenVINO model {path}')
        core = ov.Core()
        try:
            model = core.read_model(path)
            self.compiled = core.compile_model(model, 'CPU', CPU_CONFIG)
        except RuntimeError as err:
            raise UserError(f'{path} is not a loadable OpenVINO model ({first_line(err, 160)}); keep its .xml and '
                            '.bin together.') from None
        radius = read_rt_info(model, 'receptive_radius')
        self.radius = int(radius) if radius and radius.isdigit() else None
        self.scale = probe_scale(lambda x: self(x, clip=False), path)

    def __call__(self, batch, clip=True):
        """float32 RGB (N, 3, h, w) in [0, 1] -> (N, 3, h * s, w * s)."""
        try:
            out = np.array(self.compiled(np.ascontiguousarray(batch, dtype=np.float32))[0], dtype=np.float32)
        except RuntimeError as err:
            raise RuntimeError(f'OpenVINO: {first_line(err)}') from err
        return np.clip(out, 0, 1, out=out) if clip else out
