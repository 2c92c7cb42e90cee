"""Prepare paired HR/LR folders (LR made exactly as MATLAB's bicubic imresize). See datasets/README.md.

    python tools/prepare_data.py folder --hr my_photos/ --name MySet [--scales 4] [--crop-size 480 --step 240]
    python tools/prepare_data.py benchmark --hr path/to/Set14/HR --name Set14 [--scales 2 3 4]
"""
import argparse
import sys
from os import path as osp

from srdistill.data.prepare import prepare_paired_folder
from srdistill.utils.errors import UserError

ROOT = osp.abspath(osp.join(__file__, osp.pardir, osp.pardir))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest='command', required=True)
    for name, help_ in (('folder', 'a training set from any folder of HR images (HR mod-cropped to the scales)'),
                        ('benchmark', 'a test set: HR kept as is, LR as the published benchmark files')):
        p = sub.add_parser(name, help=help_)
        p.add_argument('--hr', nargs='+', required=True, help='HR image files and/or folders')
        p.add_argument('--name', required=True, help='output folder name under --root')
        p.add_argument('--root', default=osp.join(ROOT, 'datasets'), help='default: <repo>/datasets')
        p.add_argument('--scales', nargs='+', type=int, default=[4] if name == 'folder' else [2, 3, 4])
        p.add_argument('--workers', type=int, default=None, help='worker processes (default: all CPUs)')
        p.add_argument('--overwrite', action='store_true', help='replace existing output files')
        if name == 'folder':
            p.add_argument('--crop-size', type=int, default=None, help='cut HR into sub-images of this size')
            p.add_argument('--step', type=int, default=None, help='sub-image stride (default: crop-size / 2)')
            p.add_argument('--min-size', type=int, default=0, help='skip images with a shorter side below this')
    args = parser.parse_args(argv)

    out_root = osp.join(args.root, args.name)
    is_folder = args.command == 'folder'
    try:
        summary = prepare_paired_folder(
            args.hr, out_root, scales=args.scales, mod_crop_hr=is_folder, keep_channels=not is_folder,
            crop_size=args.crop_size if is_folder else None, step=args.step if is_folder else None,
            min_size=args.min_size if is_folder else 0, overwrite=args.overwrite, workers=args.workers)
    except UserError as err:
        print(f'srdistill: error: {err}', file=sys.stderr)
        return 2
    sub_dir = '_sub' if is_folder and args.crop_size else ''
    for reason in summary['skipped']:
        print(f'skipped: {reason}')
    print(f"{summary['images']} images -> {out_root} ({summary['written']} files written, existing ones kept)")
    print(f'options: dataroot_gt: {osp.relpath(osp.join(out_root, "HR" + sub_dir), ROOT)}')
    for s in args.scales:
        print(f'         dataroot_lq: {osp.relpath(osp.join(out_root, "LR_bicubic", f"X{s}{sub_dir}"), ROOT)}'
              f'   (scale: {s})')
    return 0


if __name__ == '__main__':
    sys.exit(main())
