"""``tools/prepare_data.py``: paired HR/LR datasets with LR made exactly as MATLAB's bicubic imresize.

    python tools/prepare_data.py div2k [--splits train valid] [--lmdb] [--npy]     DIV2K, downloaded when needed
    python tools/prepare_data.py benchmark --download Set5 Set14 BSD100 Urban100  the four test sets (EDSR's package)
    python tools/prepare_data.py benchmark --hr path/to/Set14/HR --name Set14     a test set from its HR folder
    python tools/prepare_data.py folder --hr my_photos/ --name MySet [--npy]      a training set from any photos
    python tools/prepare_data.py split --source datasets/291 [--fraction 0.1]      hold out a validation split

--npy also packs the training folders into uncompressed .npy arrays (<folder>_npy) for type PairedNpyDataset, which
crops a training sample without decoding an image: about 11x less CPU per sample (docs/speed.md).

Outputs go to <repo>/datasets by default (--root); existing files are kept unless --overwrite. See datasets/README.md.
"""
import argparse
from os import path as osp

from srdistill.data.benchmarks import BENCHMARK_URL, BENCHMARKS, fetch_benchmarks
from srdistill.data.div2k import DIV2K_URL, prepare_div2k
from srdistill.data.lmdb_pack import pack_lmdb
from srdistill.data.npy_pack import pack_npy
from srdistill.data.prepare import prepare_paired_folder
from srdistill.data.splits import carve_split
from srdistill.utils.errors import UserError, report_errors

REPO = osp.abspath(osp.join(osp.dirname(__file__), osp.pardir, osp.pardir))


def build_parser():
    parser = argparse.ArgumentParser(prog='prepare_data.py', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest='command', required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument('--root', default=osp.join(REPO, 'datasets'), help='datasets folder (default: %(default)s)')
    common.add_argument('--scales', nargs='+', type=int, default=[2, 3, 4], help='LR scales (default: 2 3 4)')
    common.add_argument('--workers', type=int, default=None, help='worker processes (default: all CPUs)')
    common.add_argument('--overwrite', action='store_true', help='replace existing output files')

    div2k = sub.add_parser('div2k', parents=[common], help='DIV2K: download, check, unpack, sub-images, LR (, LMDB)')
    div2k.add_argument('--splits', nargs='+', choices=['train', 'valid'], default=['train'])
    div2k.add_argument('--crop-size', type=int, default=480, help='sub-image size (default: 480)')
    div2k.add_argument('--step', type=int, default=240, help='sub-image stride (default: 240)')
    div2k.add_argument('--archive-dir', default=None, help='folder already holding DIV2K_<split>_HR.zip (no download)')
    div2k.add_argument('--url', default=DIV2K_URL, help='where the zips are fetched from (default: %(default)s)')
    div2k.add_argument('--lmdb', action='store_true', help='also pack each folder into an LMDB')
    div2k.add_argument('--npy', action='store_true',
                       help='also pack the training folders into .npy arrays (PairedNpyDataset; raw pixels: about '
                       '22 GB for HR_sub, 1.4 GB for X4_sub)')

    bench = sub.add_parser('benchmark', parents=[common], help='a test set: HR kept as is, LR as the published files')
    source = bench.add_mutually_exclusive_group(required=True)
    source.add_argument('--hr', nargs='+', help='HR image files and/or folders (with --name)')
    source.add_argument('--download', nargs='+', choices=list(BENCHMARKS), help='fetch these sets')
    bench.add_argument('--name', help='output folder name under --root (with --hr)')
    bench.add_argument('--archive', default=None, help='a local copy of benchmark.tar (with --download)')
    bench.add_argument('--url', default=BENCHMARK_URL, help='benchmark.tar address (default: %(default)s)')

    folder = sub.add_parser('folder', parents=[common], help='a training set from any folder of HR images')
    folder.add_argument('--hr', nargs='+', required=True, help='HR image files and/or folders')
    folder.add_argument('--name', required=True, help='output folder name under --root')
    folder.add_argument('--crop-size', type=int, default=None, help='cut HR into sub-images of this size')
    folder.add_argument('--step', type=int, default=None, help='sub-image stride (default: crop-size / 2)')
    folder.add_argument('--min-size', type=int, default=0, help='skip images with a shorter side below this')
    folder.add_argument('--lmdb', action='store_true', help='also pack the folders into LMDBs')
    folder.add_argument('--npy', action='store_true',
                        help='also pack the folders into .npy arrays (<folder>_npy) for type PairedNpyDataset')

    split = sub.add_parser('split', help='hold out a validation split of a prepared training set (listed in '
                           'datasets/splits/, reused when the list exists)')
    split.add_argument('--source', required=True, help='the prepared set, e.g. datasets/291')
    split.add_argument('--fraction', type=float, default=0.1, help='share held out (default: %(default)s)')
    split.add_argument('--seed', type=int, default=0, help='seed of the draw (default: %(default)s)')
    return parser


def _report(summary):
    for reason in summary.get('skipped', []):
        print(f'skipped: {reason}')
    for note in summary.get('notes', []):
        print(f'converted: {note}')


def _shown(path):
    """Relative to the repository when inside it (as the options files write paths), else absolute."""
    path = osp.abspath(path)
    return osp.relpath(path, REPO) if path.startswith(REPO + osp.sep) else path


def _print_option_lines(gt, lqs, dataset_type=None):
    if dataset_type:
        print(f'options:  type: {dataset_type}')
    print(f'{"          " if dataset_type else "options:  "}dataroot_gt: {_shown(gt)}')
    for scale, lq in lqs:
        print(f'          dataroot_lq: {_shown(lq)}   (scale: {scale})')


def run(args):
    """Carry out one parsed command. Raises UserError on bad input."""
    if args.command == 'div2k':
        folders = prepare_div2k(args.root, splits=tuple(args.splits), scales=tuple(args.scales),
                                crop_size=args.crop_size, step=args.step, base_url=args.url,
                                archive_dir=args.archive_dir, lmdb=args.lmdb, npy=args.npy, workers=args.workers,
                                overwrite=args.overwrite)
        for split in args.splits:
            print(f'DIV2K {split}:')
            _print_option_lines(folders[f'{split}_gt'], [(s, folders[f'{split}_lq_x{s}']) for s in args.scales])
        if args.npy and 'train' in args.splits:
            print('DIV2K train, packed:')
            _print_option_lines(folders['train_gt_npy'], [(s, folders[f'train_lq_x{s}_npy']) for s in args.scales],
                                'PairedNpyDataset')
        return
    if args.command == 'split':
        out = carve_split(args.source, fraction=args.fraction, seed=args.seed)
        how = 'drawn and listed in' if out['drawn'] else 'read from'
        print(f"{len(out['val'])} validation images ({how} {_shown(out['val_list'])}), {len(out['train'])} training")
        print(f"options:  training: meta_info_file: {_shown(out['train_list_npy'] or out['train_list'])}")
        print(f"          validation: dataroot_gt: {_shown(osp.join(out['val_root'], 'HR'))}")
        return
    if args.command == 'benchmark' and args.download:
        for name, out in fetch_benchmarks(args.root, names=tuple(args.download), scales=tuple(args.scales),
                                          url=args.url, archive=args.archive, workers=args.workers).items():
            print(f'{name}:')
            _print_option_lines(osp.join(out, 'HR'), [(s, osp.join(out, 'LR_bicubic', f'X{s}')) for s in args.scales])
        return
    if not args.name:
        raise UserError('--name is required with --hr (the output folder under --root).')
    is_folder = args.command == 'folder'
    out = osp.join(args.root, args.name)
    summary = prepare_paired_folder(
        args.hr, out, scales=tuple(args.scales), mod_crop_hr=is_folder, keep_channels=not is_folder,
        crop_size=args.crop_size if is_folder else None, step=args.step if is_folder else None,
        min_size=args.min_size if is_folder else 0, overwrite=args.overwrite, workers=args.workers)
    _report(summary)
    sub = '_sub' if is_folder and args.crop_size else ''
    gt, lqs = osp.join(out, f'HR{sub}'), [(s, osp.join(out, 'LR_bicubic', f'X{s}{sub}')) for s in args.scales]
    print(f"{summary['images']} images -> {out} ({summary['written']} files written, existing ones kept)")
    _print_option_lines(gt, lqs, 'PairedImageDataset')
    if is_folder and args.lmdb:
        print('packed into LMDBs (io_backend: {type: lmdb}):')
        _print_option_lines(pack_lmdb(gt), [(s, pack_lmdb(lq)) for s, lq in lqs], 'PairedImageDataset')
    if is_folder and args.npy:
        print('packed into .npy arrays (faster loading):')
        packed = {f: pack_npy(f, overwrite=args.overwrite, workers=args.workers) for f in [gt] + [lq for _, lq in lqs]}
        _print_option_lines(packed[gt], [(s, packed[lq]) for s, lq in lqs], 'PairedNpyDataset')


def main(argv=None):
    """Entry point; returns the exit status (2 on bad input, with one message and no traceback)."""
    return report_errors(run, build_parser().parse_args(argv))
