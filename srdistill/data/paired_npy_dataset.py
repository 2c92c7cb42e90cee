"""Paired HR/LR dataset read from uncompressed ``.npy`` arrays: the training crop is cut before anything is decoded."""
import numpy as np
from basicsr.data.paired_image_dataset import PairedImageDataset
from basicsr.data.transforms import augment, paired_random_crop
from basicsr.utils import img2tensor
from basicsr.utils.color_util import bgr2ycbcr
from basicsr.utils.registry import DATASET_REGISTRY
from torchvision.transforms.functional import normalize

from srdistill.data.decode_guard import name_undecodable


@DATASET_REGISTRY.register()
@name_undecodable
class PairedNpyDataset(PairedImageDataset):
    """BasicSR's ``PairedImageDataset`` on folders of ``.npy`` arrays (``tools/prepare_data.py ... --npy``).

    Each array holds an image as ``PairedImageDataset`` decodes it (uint8 BGR, H x W x 3). It is memory-mapped and the
    random crop is taken before the conversion to float, so a training sample reads a 96x96 patch instead of decoding
    a whole PNG, a fraction of the CPU time per sample (docs/speed.md, "Data loading"). With the same random
    state a sample of an image is identical to ``PairedImageDataset``'s from its PNG file
    (``tests/test_npy_dataset.py``).
    The pairs are listed in sorted order (BasicSR's folder listing follows the file system's directory order).

    Options are ``PairedImageDataset``'s: ``dataroot_gt``, ``dataroot_lq`` (folders of ``.npy`` files),
    ``meta_info_file``, ``filename_tmpl``, ``gt_size``, ``use_hflip``, ``use_rot``, ``color``, ``mean``, ``std``;
    ``io_backend`` may be left out (the arrays are read from disk; ``lmdb`` does not apply). An array that cannot be
    read is named (:func:`~srdistill.data.decode_guard.name_undecodable`).
    """

    def __init__(self, opt):
        opt = dict(opt)
        backend = dict(opt.get('io_backend') or {'type': 'disk'})
        if backend.get('type') != 'disk':
            raise ValueError(f'PairedNpyDataset reads .npy files from disk; io_backend type {backend.get("type")!r} '
                             'does not apply (leave io_backend out or set it to {type: disk}).')
        opt['io_backend'] = backend
        super().__init__(opt)
        # BasicSR lists a folder in directory order, which differs between file systems; sorted, a seed gives the
        # same samples on every machine
        self.paths.sort(key=lambda p: p['gt_path'])

    def __getitem__(self, index):
        scale = self.opt['scale']
        gt_path, lq_path = self.paths[index]['gt_path'], self.paths[index]['lq_path']
        img_gt, img_lq = np.load(gt_path, mmap_mode='r'), np.load(lq_path, mmap_mode='r')
        if self.opt['phase'] == 'train':
            img_gt, img_lq = paired_random_crop(img_gt, img_lq, self.opt['gt_size'], scale, gt_path)
        else:  # as PairedImageDataset: crop an HR that is not an exact multiple of its LR
            img_gt = img_gt[0:img_lq.shape[0] * scale, 0:img_lq.shape[1] * scale, :]
        # reads only the cropped rows; float32 in [0, 1] exactly as imfrombytes(float32=True) gives them
        img_gt, img_lq = (np.array(img, dtype=np.float32) / 255. for img in (img_gt, img_lq))
        if self.opt['phase'] == 'train':
            img_gt, img_lq = augment([img_gt, img_lq], self.opt['use_hflip'], self.opt['use_rot'])
        if self.opt.get('color') == 'y':
            img_gt = bgr2ycbcr(img_gt, y_only=True)[..., None]
            img_lq = bgr2ycbcr(img_lq, y_only=True)[..., None]
        img_gt, img_lq = img2tensor([img_gt, img_lq], bgr2rgb=True, float32=True)
        if self.mean is not None or self.std is not None:
            normalize(img_lq, self.mean, self.std, inplace=True)
            normalize(img_gt, self.mean, self.std, inplace=True)
        return {'lq': img_lq, 'gt': img_gt, 'lq_path': lq_path, 'gt_path': gt_path}
