"""The demo: a real self-distillation run on photos that ship inside scikit-image, ending with a per-exit table.

1. Writes scikit-image's bundled colour photos to ``datasets/demo/photos`` and makes paired sets from them (LR by
   exact MATLAB bicubic): training sub-images in ``datasets/demo/train``, whole validation images in
   ``datasets/demo/val``. Files already there are kept.
2. Trains ``options/demo_x4.yml`` through BasicSR's pipeline (the same path as ``tools/train.py``).
3. Evaluates the final checkpoint: PSNR/SSIM of each exit and of bicubic on the validation photos, printed as a
   table, and says whether every exit beats bicubic (exit status 1 if not).
"""
import sys
from os import path as osp

import yaml

from srdistill.archs.checkpoints import load_checkpoint
from srdistill.data.prepare import as_uint8_bgr, prepare_paired_folder, write_image
from srdistill.evaluation.exits import default_device, evaluate, markdown_table, paired_files
from srdistill.train import train_pipeline

DEMO_OPT = osp.join('options', 'demo_x4.yml')
# name -> scikit-image loader; all are files inside the scikit-image wheel (no download)
TRAIN_PHOTOS = ('astronaut', 'rocket', 'hubble_deep_field', 'immunohistochemistry', 'retina', 'motorcycle_left',
                'motorcycle_right')
VAL_PHOTOS = ('chelsea', 'coffee')


def _load_photo(name):
    from skimage import data
    if name.startswith('motorcycle_'):
        left, right, _ = data.stereo_motorcycle()
        return left if name.endswith('left') else right
    return getattr(data, name)()


def prepare_demo_data(root, show_progress=True):
    """Write the demo photos and their paired train/val sets under ``<root>/datasets/demo``. Returns the folder."""
    demo = osp.join(root, 'datasets', 'demo')
    for split, names in (('train', TRAIN_PHOTOS), ('val', VAL_PHOTOS)):
        for name in names:
            write_image(as_uint8_bgr(_load_photo(name)), osp.join(demo, 'photos', split, f'{name}.png'))
    prepare_paired_folder([osp.join(demo, 'photos', 'train')], osp.join(demo, 'train'), scales=(4, ), crop_size=144,
                          step=72, show_progress=show_progress)
    prepare_paired_folder([osp.join(demo, 'photos', 'val')], osp.join(demo, 'val'), scales=(4, ), mod_crop_hr=False,
                          show_progress=show_progress)
    return demo


def run_demo(root, extra_args=()):
    """Prepare the data, train, evaluate and print the table. Returns 0 if every exit beats bicubic, else 1."""
    print('== 1/3 Preparing the demo data (scikit-image photos, LR by exact MATLAB bicubic) ==', flush=True)
    prepare_demo_data(root)

    print(f'== 2/3 Training: python tools/train.py -opt {DEMO_OPT} ==', flush=True)
    argv = sys.argv
    sys.argv = ['tools/train.py', '-opt', osp.join(root, DEMO_OPT), *extra_args]
    try:
        train_pipeline(root)
    finally:
        sys.argv = argv

    print('== 3/3 Evaluating every exit of the final checkpoint ==', flush=True)
    with open(osp.join(root, DEMO_OPT)) as f:
        opt = yaml.safe_load(f)
    ckpt = osp.join(root, 'experiments', opt['name'], 'models', 'net_g_latest.pth')
    net, _ = load_checkpoint(ckpt, osp.join(root, DEMO_OPT), device=default_device())
    val = opt['datasets']['val']
    scores, _ = evaluate(net, paired_files(osp.join(root, val['dataroot_gt']), osp.join(root, val['dataroot_lq'])),
                         opt['scale'])
    scores.pop('bicubic_srcnn')  # the fair baseline is the bicubic of the same LR files the network sees
    print(f'\nCheckpoint: {osp.relpath(ckpt, root)}')
    print(f'Validation photos: {", ".join(VAL_PHOTOS)} (x{opt["scale"]}; Y channel, {opt["scale"]}-pixel border '
          'cropped; bicubic = MATLAB imresize)\n')
    print(markdown_table(scores, 'demo val'))
    losers = [key for key, m in scores.items() if key != 'bicubic' and m['psnr'] <= scores['bicubic']['psnr']]
    if losers:
        print(f'\nNOT every exit beats bicubic: {", ".join(losers)} do not.')
        return 1
    print('\nEvery exit beats bicubic.')
    return 0
