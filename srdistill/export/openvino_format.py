"""The ``openvino`` export: an OpenVINO IR, ``<name>.openvino.xml`` + ``<name>.openvino.bin``, run back on the CPU.

- Conversion: ``openvino.convert_model`` straight from the PyTorch exit, input ``lr`` of shape (batch, C, height,
  width) with every dimension but C dynamic, output ``sr``; saved with fp32 weights (``compress_to_fp16=False``:
  ``save_model`` stores fp16 weights by default).
- ``rt_info`` (in the ``.xml``) holds what the runner needs and the graph does not say: the receptive-field radius
  (exact tiles), the scale and the standalone network's options.
- Check: :class:`~srdistill.inference.openvino_runner.OpenVinoRunner`, which compiles for the CPU with
  ``INFERENCE_PRECISION_HINT`` f32 (the plugin's default, bf16 on CPUs that have it, is 1e-2 off).
"""
import json
import warnings
from os import path as osp

import torch

from srdistill.inference.openvino_runner import RT_INFO, OpenVinoRunner
from srdistill.inference.optional import require
from srdistill.utils.errors import UserError, first_line

_JIT_WARNING = r'`torch\.jit\.\w+` is deprecated'


def write_openvino(path, weights, net, check, reference, radius, network):
    """Convert ``net`` to ``path`` (``.xml``) and ``weights`` (its ``.bin``: OpenVINO names it after the ``.xml``), run
    it on ``check`` and return the max |difference| from ``reference``.

    Args:
        radius (int | None): Receptive-field radius of the exit, in LR pixels (stored in ``rt_info``).
        network (dict): The standalone network's options (stored in ``rt_info``).
    """
    from srdistill.export.formats import _diff
    ov = require('openvino', '--format openvino')
    if osp.splitext(weights)[0] != osp.splitext(path)[0]:
        raise ValueError(f'OpenVINO writes the weights of {path} beside it, not to {weights}')
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings('ignore', message=_JIT_WARNING, category=FutureWarning)
            model = ov.convert_model(net.eval(), example_input=check, input=[(-1, check.shape[1], -1, -1)])
    except Exception as err:  # noqa: BLE001 (the frontend raises its own types, with the failing operator named)
        raise UserError(f'OpenVINO could not convert the exit ({first_line(err, 200)}); nothing was written.') from None
    model.inputs[0].get_tensor().set_names({'lr'})
    model.outputs[0].get_tensor().set_names({'sr'})
    if radius is not None:
        model.set_rt_info(str(radius), [RT_INFO, 'receptive_radius'])
    model.set_rt_info(str(network.get('upscale', '')), [RT_INFO, 'scale'])
    model.set_rt_info(json.dumps(network), [RT_INFO, 'network'])
    ov.save_model(model, path, compress_to_fp16=False)
    with torch.no_grad():
        return _diff(OpenVinoRunner(path)(check.numpy(), clip=False), reference)
