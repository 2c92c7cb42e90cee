"""Export exits of a checkpoint, each format verified against the exit's output inside the multi-exit model."""
import json
import os
import tempfile
from functools import partial
from os import path as osp

import torch

from srdistill.archs.checkpoints import (
    choose_weights,
    experiment_label,
    network_from_state_dict,
    read_checkpoint,
    stored_network_opt,
)
from srdistill.archs.cost import MAC_OUTPUT_SIZE, exit_macs
from srdistill.data.download import sha256sum
from srdistill.export import formats
from srdistill.export.ncnn_format import write_ncnn
from srdistill.export.openvino_format import write_openvino
from srdistill.utils.errors import UserError
from srdistill.utils.partial_files import remove_stale
from srdistill.version import __version__

# largest |difference| accepted between an export and the PyTorch exit, on 0..1 images
TOLERANCE = {'pth': 0.0, 'safetensors': 0.0, 'torchscript': 1e-5, 'onnx': 1e-4, 'openvino': 1e-4, 'ncnn': 1e-4}


def check_image(path=None, scale=4):
    """The LR image exports are checked on: ``path`` (any image), or a real photo crop (scikit-image's chelsea).

    Returns:
        Tensor: (1, 3, h, w) in [0, 1], RGB.
    """
    from basicsr.utils import img2tensor

    from srdistill.data.image_files import RGB_FLOAT, read_image
    from srdistill.data.prepare import as_uint8_bgr
    from srdistill.utils.matlab_imresize import imresize
    if path is not None:
        return img2tensor(read_image(path, RGB_FLOAT), bgr2rgb=False, float32=True)[None]
    from skimage import data
    lq = imresize(as_uint8_bgr(data.chelsea())[100:196, 150:246], 1 / scale)
    return img2tensor(lq / 255., bgr2rgb=True, float32=True)[None]


def _writable(folder):
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise UserError(f'cannot write to the output folder {folder} ({err.strerror}). Choose another --out.') from None


def export(ckpt, formats_=('pth', ), out_dir='exports', exits='all', param_key='params', opt_path=None,
           check_path=None, label=None, overwrite=False, int8=False, calib_images=None, test_pairs=None):
    """Export the chosen exits of ``ckpt`` in ``formats_`` into ``out_dir``, with a JSON sidecar per file.

    Args:
        ckpt (str): Multi-exit (or plain BasicSR) checkpoint of a registered architecture.
        formats_ (tuple[str]): Among ``pth``, ``safetensors``, ``onnx``, ``torchscript``, ``openvino``, ``ncnn``
            (docs/export_runtimes.md).
        out_dir (str): Output folder.
        exits (str | list[int]): ``'all'``, ``'final'`` or depths.
        param_key (str): Weights used for safetensors/ONNX/TorchScript (``params`` or ``params_ema``); the ``pth``
            holds both when the checkpoint has both.
        opt_path (str | None): Options file whose ``network_g`` must match the checkpoint.
        check_path (str | None): Image to check the exports on. Default: a real photo crop.
        label (str | None): File-name prefix. Default: the checkpoint's experiment name.
        overwrite (bool): Rewrite every export. Default: False: complete exports of this checkpoint are kept and the
            missing ones written (a rerun completes an interrupted export); refused when nothing is missing or an
            export of another checkpoint is in the way.
        int8 (bool): Also write a statically quantised INT8 ONNX (``<name>.int8.onnx``; needs ``onnx`` in
            ``formats_``), with its size, latency and PSNR change against the fp32 ONNX in its sidecar.
        calib_images (list[np.ndarray] | None): uint8 LR images for INT8 calibration. Default: LR of scikit-image's
            astronaut, rocket and immunohistochemistry photos.
        test_pairs (list[tuple[np.ndarray, np.ndarray]] | None): (HR, LR) images for the INT8 PSNR change. Default:
            scikit-image's chelsea and coffee photos.

    Returns:
        list[dict]: The sidecars, one per export (written, or kept from an earlier run).
    """
    unknown = [f for f in formats_ if f not in formats.SUFFIXES]
    if unknown:
        raise UserError(f'unknown format(s) {unknown}; choose among {list(formats.SUFFIXES)}.')
    if int8 and 'onnx' not in formats_:
        raise UserError('--int8 quantises the ONNX export: add onnx to --format.')
    states, stored = read_checkpoint(ckpt)  # read once: every format is written from these
    chosen = choose_weights(states, param_key)
    multi, net_opt = network_from_state_dict(chosen, ckpt, opt_path, stored_network_opt(ckpt, stored))
    depths = resolve_exits(exits, multi.depths)
    scale = net_opt['upscale']
    label = label or experiment_label(ckpt)
    targets = {(d, f): osp.join(out_dir, f'{label}_e{d}_x{scale}{formats.SUFFIXES[f]}') for d in depths
               for f in formats_}
    if int8:
        targets.update({(d, 'int8'): osp.join(out_dir, f'{label}_e{d}_x{scale}.int8.onnx') for d in depths})
    source_hash = sha256sum(ckpt)
    todo = _to_write(targets, dict(source_sha256=source_hash, param_key=param_key), overwrite)
    _writable(out_dir)
    remove_stale(out_dir)  # temporary files of an export that was killed
    check = check_image(check_path, scale)
    sidecars = []
    for depth in depths:
        with torch.no_grad():
            reference = multi(check, exit=depth).numpy()
        sub = multi.exit_network(depth, chosen)
        metadata = dict(source=osp.abspath(ckpt), source_sha256=source_hash, exit=depth, scale=scale,
                        param_key=param_key, srdistill_version=__version__)
        network = multi.exit_network_opt(depth)  # the standalone network: its registry name and arguments
        for fmt in formats_:
            path = targets[(depth, fmt)]
            if (depth, fmt) not in todo:
                sidecars.append(_read_sidecar(path))
                continue
            if fmt == 'pth':
                write = partial(formats.write_pth, multi=multi, states=states, depth=depth, check=check,
                                reference=reference)
            elif fmt == 'safetensors':
                write = partial(formats.write_safetensors, multi=multi, state=chosen, depth=depth, check=check,
                                reference=reference, metadata=dict(metadata, network=json.dumps(network)))
            elif fmt == 'onnx':
                write = partial(formats.write_onnx, net=sub, check=check, reference=reference)
            elif fmt == 'ncnn':
                write = partial(write_ncnn, net=sub, check=check, reference=reference)
            elif fmt == 'openvino':
                write = partial(write_openvino, net=sub, check=check, reference=reference,
                                radius=multi.receptive_radius(depth), network=network)
            else:
                write = partial(formats.write_torchscript, net=sub, check=check, reference=reference)
            companion = formats.companion_path(path, fmt)
            pair = {'companions': [companion]} if companion else {}  # one-file formats: write_checked's 3 arguments
            diff = formats.write_checked(path, write, TOLERANCE[fmt], **pair)
            sidecar = dict(metadata, file=osp.basename(path), sha256=sha256sum(path), format=fmt,
                           **({'companions': {osp.basename(companion): sha256sum(companion)}} if companion else {}),
                           architecture=network['type'], network=network,
                           params=multi.exit_parameters(depth), macs=exit_macs(multi, depth),
                           macs_output_size=list(MAC_OUTPUT_SIZE),
                           check_image=check_path or 'skimage.data.chelsea crop', check_shape=list(check.shape),
                           max_abs_diff=diff, tolerance=TOLERANCE[fmt],
                           **({'onnx_opset': formats.ONNX_OPSET} if fmt == 'onnx' else {}))
            _write_sidecar(path, sidecar)
            sidecars.append(sidecar)
        if int8 and (depth, 'int8') in todo:
            sidecars.append(_export_int8(targets[(depth, 'onnx')], targets[(depth, 'int8')], metadata, scale,
                                         calib_images, test_pairs))
        elif int8:
            sidecars.append(_read_sidecar(targets[(depth, 'int8')]))
    return sidecars


def resolve_exits(requested, depths):
    """Depths to export: ``'all'``, ``'final'`` or a list of ints; each must be an output of the network.

    Raises:
        UserError: A depth the checkpoint does not have (the message lists the ones it has).
    """
    if requested in (None, 'all', ['all']):
        return list(depths)
    if requested in ('final', ['final']):
        return [depths[-1]]
    missing = [d for d in requested if d not in depths]
    if missing:
        raise UserError(f'--exit {missing}: the checkpoint has no such output; it has {list(depths)} (the last is the '
                        'final output).')
    return list(requested)


def _to_write(targets, source, overwrite):
    """The keys of ``targets`` to (re)write; the others are complete exports of this checkpoint, kept as they are.

    An export is complete when its sidecar exists and describes it (its ``sha256``): the sidecar is written after the
    model, so a run killed in between leaves a model without one, which is redone. A rerun after an interrupted export
    therefore writes only what is missing.

    Args:
        targets (dict): ``{(depth, format): path}``.
        source (dict): Sidecar fields a kept export must have (``source_sha256``, ``param_key``).
        overwrite (bool): Rewrite every target.

    Raises:
        UserError: A complete export of another checkpoint (or other weights) is in the way, or every target is
            already complete (there is nothing to do); both without ``overwrite``.
    """
    if overwrite:
        return set(targets)
    done, other = set(), []
    for key, path in targets.items():
        sidecar = _read_sidecar(path) if osp.isfile(path) else None
        if sidecar is None or not _describes(sidecar, path):
            continue  # no model, or a model its sidecar does not describe: (re)write it
        if all(sidecar.get(k) == v for k, v in source.items()):
            done.add(key)
        else:
            other.append(path)
    if other:
        raise UserError(f'{other[0]} exists, exported from another checkpoint or --param-key ({len(other)} of the '
                        'exports are); pass --overwrite to replace them, or choose another --out or --label.')
    for depth, fmt in targets:  # an INT8 model is made from its fp32 ONNX: redone with it
        if fmt == 'int8' and (depth, 'onnx') not in done:
            done.discard((depth, fmt))
    if len(done) == len(targets):
        first = next(iter(targets.values()))
        raise UserError(f'{first} exists ({len(done)} of the exports do); pass --overwrite to replace them.')
    return set(targets) - done


def _describes(sidecar, path):
    """Whether ``sidecar`` describes the files at ``path`` and beside it (a two-file format's ``companions``): a run
    killed between renaming a pair leaves a file its sidecar does not describe."""
    files = {path: sidecar.get('sha256'), **{osp.join(osp.dirname(path), name): digest
                                              for name, digest in (sidecar.get('companions') or {}).items()}}
    return all(digest is None or (osp.isfile(f) and sha256sum(f) == digest) for f, digest in files.items())


def _read_sidecar(path):
    """The JSON sidecar of export ``path``, or None when it is missing or unreadable (a run killed before it)."""
    try:
        with open(path + '.json') as f:
            sidecar = json.load(f)
    except (OSError, ValueError):
        return None
    return sidecar if isinstance(sidecar, dict) else None


def _write_sidecar(path, sidecar):
    """Write ``path``'s sidecar last, atomically: its presence marks the export complete (see :func:`_to_write`)."""

    def write(tmp):
        with open(tmp, 'w') as f:
            json.dump(sidecar, f, indent=1)
        return 0

    formats.write_checked(path + '.json', write, 0)


def _export_int8(fp32_path, int8_path, metadata, scale, calib_images, test_pairs):
    from srdistill.export.quantize import CALIB_PHOTOS, bundled_pairs, compare_int8, quantize_int8
    calib = calib_images or [lq for _, lq in bundled_pairs(scale, CALIB_PHOTOS)]
    pairs = test_pairs or bundled_pairs(scale)
    report = {}

    def write(tmp):
        quantize_int8(fp32_path, tmp, calib)
        report.update(compare_int8(fp32_path, tmp, pairs, scale))
        return 0.0

    formats.write_checked(int8_path, write, float('inf'))
    sidecar = dict(metadata, file=osp.basename(int8_path), sha256=sha256sum(int8_path), format='onnx-int8',
                   quantization='static QDQ, per-channel int8 weights, uint8 activations, MinMax calibration '
                   '(onnxruntime)', calibration_images=len(calib), onnx_opset=formats.ONNX_OPSET, **report)
    _write_sidecar(int8_path, sidecar)
    return sidecar
