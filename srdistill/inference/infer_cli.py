"""``tools/infer.py``: super-resolve your images with an exported exit or a checkpoint.

    python tools/infer.py --model exports/SD_e8_x4.onnx --input photos/ --output out/
    python tools/infer.py --model exports/SD_e8_x4.ncnn.param --input photos/ --output out/ --tile 256
    python tools/infer.py --model experiments/<name>/models/net_g_latest.pth --exit 8 --input 'shots/*.jpg' \
        --output out/

Images, folders and globs; PNG, JPEG, BMP, TIFF and WebP; grayscale, RGBA and 16-bit kept in their kind. An input
that cannot be read, or that fails (out of memory, for one), is reported in one line and skipped; the others finish
and the exit status is 1. Inputs are never overwritten; existing outputs only with --overwrite.

--tile bounds memory (one tile's work plus the 8/16-bit output; docs/infer_memory.md); by default tiles overlap by
what makes them exact for the network (twice its receptive-field radius: 2 * (2 * blocks + 3) LR pixels).

OpenVINO (.openvino.xml) and ncnn (.ncnn.param) exports run on the CPU in fp32, their .bin beside them (pip install
openvino / ncnn); a tiled run's default overlap is exact for them too.

A TorchScript file is a program, not data: it runs only with --trust-torchscript. Prefer .safetensors or .onnx.
"""
import argparse
import os
import sys
from os import path as osp

import cv2
import torch
from tqdm import tqdm

from srdistill.data.image_files import find_images, read_image
from srdistill.data.prepare import write_image
from srdistill.evaluation.exits import default_device
from srdistill.inference.images import upscale_image
from srdistill.inference.runners import PRECISIONS, load_runner
from srdistill.utils.errors import UserError, first_line, report_errors
from srdistill.utils.tiling import plan_overlap


def build_parser():
    p = argparse.ArgumentParser(prog='infer.py', description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--model', required=True, help='.onnx, .openvino.xml, .ncnn.param, .torchscript.pt, .safetensors '
                   'or .pth (export or checkpoint)')
    p.add_argument('--exit', type=int, help='with a multi-exit checkpoint: the exit to run (default: the final one)')
    p.add_argument('--input', nargs='+', required=True, help='image files, folders or globs')
    p.add_argument('--output', required=True, help='output folder')
    p.add_argument('--suffix', default='', help='added to each output name, e.g. _x4 (default: none)')
    p.add_argument('--tile', type=int, help='LR tile size: bounded memory for large images')
    p.add_argument('--tile-overlap', type=int, help='LR pixels shared by neighbouring tiles (default: exact for the '
                   'network, twice its receptive-field radius; 32 when that is unknown)')
    p.add_argument('--device', default='auto', choices=['auto', 'cpu', 'cuda'])
    p.add_argument('--precision', default='fp32', choices=list(PRECISIONS), help='fp16/bf16 need CUDA')
    p.add_argument('--param-key', default='params', choices=['params', 'params_ema'])
    p.add_argument('--overwrite', action='store_true', help='replace existing outputs')
    p.add_argument('--trust-torchscript', action='store_true',
                   help='allow a TorchScript model: it is a program that runs its own code (only from a source you '
                   'trust)')
    return p


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


# how torch (CPU: "DefaultCPUAllocator: can't allocate memory", CUDA: "CUDA out of memory") and ONNX Runtime ("Failed to
# allocate memory", std::bad_alloc) say it
_OUT_OF_MEMORY = ('out of memory', 'allocate memory', 'bad_alloc')


def image_failure(src, err, tile):
    """One line for an image that failed; an out-of-memory failure says how to bound memory."""
    if isinstance(err, UserError):
        return f'{str(err).rstrip(".")}.'
    if isinstance(err, MemoryError) or any(m in str(err).lower() for m in _OUT_OF_MEMORY):
        advice = f'a smaller --tile than {tile}' if tile else '--tile 512 (or smaller) to bound memory'
        return f'{src}: out of memory ({type(err).__name__}: {first_line(err, 120)}); use {advice}.'
    return f'{src}: {type(err).__name__}: {first_line(err, 160)}.'


def run(args):
    """Process every input; returns the number of inputs that failed."""
    device = default_device() if args.device == 'auto' else args.device
    files = find_images(args.input, written_as=None)  # plan_outputs names and checks the outputs
    outputs = plan_outputs(files, args.output, args.suffix, args.overwrite)
    if args.tile is not None and args.tile < 1:
        raise UserError(f'--tile {args.tile}: a tile size is a positive number of LR pixels.')
    runner = load_runner(args.model, args.exit, device, args.precision, args.param_key, args.trust_torchscript)
    overlap, note = plan_overlap(args.tile, args.tile_overlap, runner.radius)
    if note:
        print(note, file=sys.stderr)
    os.makedirs(args.output, exist_ok=True)
    failed = []
    for src, dst in tqdm(list(zip(files, outputs)), unit='image', desc='Super-resolving'):
        message = None
        try:
            img = read_image(src)  # its own kind: gray, alpha and 16-bit are kept
            write_image(upscale_image(runner, img, args.tile, overlap), dst, overwrite=True)
        except (UserError, MemoryError, RuntimeError, cv2.error) as err:
            message = image_failure(src, err, args.tile)
        if message:  # outside the except block: the exception, and the tensors its frames held, are gone
            img = None
            failed.append(src)
            tqdm.write(f'skipped: {message}', file=sys.stderr)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()  # so that the next image has the failed one's memory
    print(f'{len(files) - len(failed)} of {len(files)} images written to {args.output}'
          + (f'; {len(failed)} failed: {", ".join(failed[:5])}' if failed else ''))
    return len(failed)


def main(argv=None):
    """Entry point: 0 when every image was written, 1 when some failed, 2 on bad arguments (one message)."""
    return report_errors(lambda args: 1 if run(args) else 0, build_parser().parse_args(argv))
