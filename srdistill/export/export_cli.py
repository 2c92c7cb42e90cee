"""``tools/export.py``: exits of a checkpoint as standalone models, each checked against the multi-exit model.

    python tools/export.py --ckpt experiments/<name>/models/net_g_latest.pth --exit 8 \\
        --format pth safetensors onnx torchscript --out exports/
"""
import argparse
import sys

from srdistill.export.exporter import export
from srdistill.export.formats import SUFFIXES
from srdistill.utils.errors import UserError


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
    return p


def _exits(values):
    if values in (['all'], ['final']):
        return values[0]
    try:
        return [int(v) for v in values]
    except ValueError:
        raise UserError(f"--exit takes depths (integers), 'all' or 'final', got {' '.join(values)}.") from None


def main(argv=None):
    """Entry point; returns the exit status (2 on bad input, with one message and no traceback)."""
    args = build_parser().parse_args(argv)
    try:
        sidecars = export(args.ckpt, tuple(args.format), args.out, _exits(args.exit), args.param_key, args.opt,
                          args.check_image, args.label, args.overwrite)
    except UserError as err:
        print(f'srdistill: error: {err}', file=sys.stderr)
        return 2
    for s in sidecars:
        print(f"{args.out}/{s['file']}: exit {s['exit']}, {s['params']:,} params, {s['macs'] / 1e9:.1f} GMACs "
              f"(1280x720 output), max |diff| {s['max_abs_diff']:.1e} on the check image")
    return 0
