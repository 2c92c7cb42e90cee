"""``tools/export.py``: exits of a checkpoint as standalone models, each checked against the multi-exit model.

    python tools/export.py --ckpt experiments/<name>/models/net_g_latest.pth --exit 8 \\
        --format pth safetensors onnx torchscript --out exports/
    python tools/export.py --ckpt <checkpoint> --exit 8 --format openvino ncnn --out exports/

openvino and ncnn need pip install openvino / ncnn pnnx (docs/export_runtimes.md).
"""
import argparse

from srdistill.export.exporter import export
from srdistill.export.formats import SUFFIXES
from srdistill.utils.errors import UserError, report_errors


def build_parser():
    p = argparse.ArgumentParser(prog='export.py', description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--ckpt', required=True, help='checkpoint (net_g_*.pth)')
    p.add_argument('-opt', help='options file whose network_g must match the checkpoint')
    p.add_argument('--exit', nargs='+', default=['all'],
                   help="depths to export (e.g. 8), 'all' (default) or 'final'")
    p.add_argument('--format', nargs='+', default=['pth'], choices=list(SUFFIXES), help='default: pth')
    p.add_argument('--out', default='exports', help='output folder (default: %(default)s)')
    p.add_argument('--param-key', default='params', choices=['params', 'params_ema'],
                   help='weights for safetensors/ONNX/TorchScript (the pth holds both when present)')
    p.add_argument('--check-image', help='image the exports are checked on (default: a bundled photo crop)')
    p.add_argument('--label', help='file-name prefix (default: the experiment name)')
    p.add_argument('--overwrite', action='store_true', help='replace existing exports')
    p.add_argument('--int8', action='store_true', help='also a statically quantised INT8 ONNX (with --format onnx)')
    p.add_argument('--calib', nargs='+', help='LR images/folders for INT8 calibration (default: bundled photos)')
    p.add_argument('--test-set', help='prepared set under --data-root for the INT8 PSNR change (default: bundled '
                   'photos)')
    p.add_argument('--data-root', default='datasets')
    return p


def _exits(values):
    if values in (['all'], ['final']):
        return values[0]
    try:
        return [int(v) for v in values]
    except ValueError:
        raise UserError(f"--exit takes depths (integers), 'all' or 'final', got {' '.join(values)}.") from None


def _run(args):
    calib = test = None
    if args.calib:
        from srdistill.data.image_files import UINT8, find_images, read_image
        calib = [read_image(f, UINT8) for f in find_images(args.calib, written_as=None)]
    if args.test_set:
        from srdistill.archs.checkpoints import infer_network_opt, read_state_dict
        from srdistill.data.image_files import UINT8, read_image
        from srdistill.evaluation.exits import dataset_pairs
        scale = infer_network_opt(read_state_dict(args.ckpt, args.param_key), args.ckpt)['upscale']
        pairs = dataset_pairs(args.test_set, args.data_root, scale)
        test = [(read_image(g, UINT8), read_image(q, UINT8)) for g, q in pairs]
    return export(args.ckpt, tuple(args.format), args.out, _exits(args.exit), args.param_key, args.opt,
                  args.check_image, args.label, args.overwrite, args.int8, calib, test)


def main(argv=None):
    """Entry point; returns the exit status (2 on bad input, with one message and no traceback)."""
    args = build_parser().parse_args(argv)
    sidecars = []
    status = report_errors(lambda: sidecars.extend(_run(args)))
    if status:
        return status
    for s in sidecars:
        if s['format'] == 'onnx-int8':
            print(f"{args.out}/{s['file']}: {s['int8']['size_mb']:.2f} MB vs {s['fp32']['size_mb']:.2f} MB fp32, "
                  f"{s['int8']['latency_ms']:.1f} vs {s['fp32']['latency_ms']:.1f} ms (CPU, LR "
                  f"{s['latency_input'][1]}x{s['latency_input'][0]}), PSNR {s['psnr_change']:+.2f} dB on "
                  f"{s['test_images']} test images")
            continue
        print(f"{args.out}/{s['file']}: exit {s['exit']}, {s['params']:,} params, {s['macs'] / 1e9:.1f} GMACs "
              f"(1280x720 output), max |diff| {s['max_abs_diff']:.1e} on the check image")
    return 0
