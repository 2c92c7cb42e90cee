"""``tools/infer.py``: super-resolve your images with an exported exit or a checkpoint.

    python tools/infer.py --model exports/SD_e8_x4.onnx --input photos/ --output out/
    python tools/infer.py --model experiments/<name>/models/net_g_latest.pth --exit 8 --input 'shots/*.jpg' \
        --output out/

Images, folders and globs; PNG, JPEG, BMP, TIFF and WebP; grayscale, RGBA and 16-bit kept in their kind. An input
that cannot be read is reported and skipped; the others finish and the exit status is 1. Inputs are never
overwritten; existing outputs only with --overwrite.
"""
import argparse
import glob
import os
import sys
from os import path as osp

import cv2
from tqdm import tqdm

from srdistill.data.checks import IMAGE_EXTENSIONS, check_complete
from srdistill.data.prepare import write_image
from srdistill.evaluation.exits import default_device
from srdistill.inference.images import upscale_image
from srdistill.inference.runners import PRECISIONS, load_runner
from srdistill.utils.errors import UserError, report_errors


def build_parser():
    p = argparse.ArgumentParser(prog='infer.py', description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--model', required=True, help='.onnx, .torchscript.pt, .safetensors or .pth (export or checkpoint)')
    p.add_argument('--exit', type=int, help='with a multi-exit checkpoint: the exit to run (default: the final one)')
    p.add_argument('--input', nargs='+', required=True, help='image files, folders or globs')
    p.add_argument('--output', required=True, help='output folder')
    p.add_argument('--suffix', default='', help='added to each output name, e.g. _x4 (default: none)')
    p.add_argument('--tile', type=int, help='LR tile size: bounded memory for large images')
    p.add_argument('--tile-overlap', type=int, default=32, help='default: 32')
    p.add_argument('--device', default='auto', choices=['auto', 'cpu', 'cuda'])
    p.add_argument('--precision', default='fp32', choices=list(PRECISIONS), help='fp16/bf16 need CUDA')
    p.add_argument('--param-key', default='params', choices=['params', 'params_ema'])
    p.add_argument('--overwrite', action='store_true', help='replace existing outputs')
    return p


def collect_inputs(items):
    """Image files named by files, folders (not recursive) and globs, in order, without repeats."""
    files = []
    for item in items:
        if osp.isdir(item):
            found = [osp.join(item, n) for n in sorted(os.listdir(item))]
        elif any(c in item for c in '*?['):
            found = sorted(glob.glob(item))
        elif osp.isfile(item):
            found = [item]
        else:
            raise UserError(f'input {item} does not exist.')
        files += [f for f in found if osp.isfile(f) and osp.splitext(f)[1].lower() in IMAGE_EXTENSIONS]
    files = list(dict.fromkeys(files))
    if not files:
        raise UserError(f'no images ({" ".join(IMAGE_EXTENSIONS)}) in {" ".join(items)}.')
    return files


def plan_outputs(files, out_dir, suffix, overwrite):
    """Output path of every input; refuses a plan that would overwrite an input, or an existing output unasked."""
    outputs = [osp.join(out_dir, f'{osp.splitext(osp.basename(f))[0]}{suffix}{osp.splitext(f)[1].lower()}')
               for f in files]
    if len(set(outputs)) != len(outputs):
        raise UserError('two inputs have the same file name and would write the same output; use separate runs.')
    inputs = {osp.realpath(f) for f in files}
    clash = [o for o in outputs if osp.realpath(o) in inputs]
    if clash:
        raise UserError(f'{clash[0]} is an input: writing there would overwrite it. Choose another --output or a '
                        '--suffix.')
    existing = [o for o in outputs if osp.exists(o)]
    if existing and not overwrite:
        raise UserError(f'{existing[0]} exists ({len(existing)} outputs do); pass --overwrite to replace them.')
    return outputs


def run(args):
    """Process every input; returns the number of inputs that failed."""
    device = default_device() if args.device == 'auto' else args.device
    files = collect_inputs(args.input)
    outputs = plan_outputs(files, args.output, args.suffix, args.overwrite)
    if args.tile is not None and not 0 <= args.tile_overlap < args.tile:
        raise UserError(f'--tile {args.tile} must be larger than --tile-overlap {args.tile_overlap}.')
    runner = load_runner(args.model, args.exit, device, args.precision, args.param_key)
    os.makedirs(args.output, exist_ok=True)
    failed = []
    for src, dst in tqdm(list(zip(files, outputs)), unit='image', desc='Super-resolving'):
        try:
            check_complete(src)
            img = cv2.imread(src, cv2.IMREAD_UNCHANGED)
            if img is None:
                raise UserError(f'{src} cannot be read as an image')
            write_image(upscale_image(runner, img, args.tile, args.tile_overlap), dst, overwrite=True)
        except UserError as err:
            failed.append(src)
            tqdm.write(f'skipped: {str(err).rstrip(".")}.', file=sys.stderr)
    print(f'{len(files) - len(failed)} of {len(files)} images written to {args.output}'
          + (f'; {len(failed)} failed: {", ".join(failed[:5])}' if failed else ''))
    return len(failed)


def main(argv=None):
    """Entry point: 0 when every image was written, 1 when some failed, 2 on bad arguments (one message)."""
    return report_errors(lambda args: 1 if run(args) else 0, build_parser().parse_args(argv))
