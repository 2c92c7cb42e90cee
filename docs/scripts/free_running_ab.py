"""One-off GPU experiment behind docs/speed.md ("Reading the losses at every step"): BasicSR's training loop running
free (as a real run) with the losses read at every step, as BasicSR's ``reduce_loss_dict`` does with ``.item()``
(a host-device synchronisation per step), against kept on the device (``_lazy_reduce_loss_dict`` below, which a
real run would convert only when it logs). Rounds alternate between the two, on the same model, loader and GPU, with
the real data and with one batch already on the device; also the synchronised step. The difference measured was
within the noise, so ``SelfDistillSRModel`` keeps BasicSR's.

    python docs/scripts/free_running_ab.py options/sd_x4_291.yml [more options files] > ab.json
"""
import json
import statistics
import sys
import time

import srdistill  # noqa: F401  (BasicSR's compatibility fixes, before basicsr is imported)

# isort: split
import torch
from basicsr.data import build_dataloader, build_dataset
from basicsr.data.data_sampler import EnlargedSampler
from basicsr.models import build_model
from basicsr.models.base_model import BaseModel

from srdistill.benchmark import data_wait as dw
from srdistill.benchmark.measure import sync
from srdistill.models.self_distill_model import SelfDistillSRModel

ROUNDS, ITERS, WORKERS = 3, 150, 8


def _lazy_reduce_loss_dict(self, loss_dict):
    """BasicSR's ``reduce_loss_dict`` for one process, without ``.item()``: the losses stay tensors on the device."""
    with torch.no_grad():
        return {name: value.detach().mean() for name, value in loss_dict.items()}


LAZY, EAGER = _lazy_reduce_loss_dict, BaseModel.reduce_loss_dict


def measure(opt_path, device):
    opt = dw.load_train_options(opt_path, device, num_worker=WORKERS)
    train_opt = opt['datasets']['train']
    dataset = build_dataset(train_opt)
    sampler = EnlargedSampler(dataset, 1, 0, train_opt.get('dataset_enlarge_ratio', 1))
    loader = build_dataloader(dataset, train_opt, num_gpu=opt['num_gpu'], dist=False, sampler=sampler, seed=0)
    model = build_model(opt)
    torch.backends.cudnn.benchmark = True
    batches = dw._Batches(dw._prefetcher(loader, opt), sampler, opt)
    on_device = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batches.next().items()}
    it = 1
    dw._free_running(model, batches, opt, device, 30, it)  # warm-up (workers, cuDNN autotuning, clocks)
    it += 30
    rates = {f'{mode} {data}': [] for mode in ('eager', 'lazy') for data in ('data', 'alone')}
    for _ in range(ROUNDS):
        for mode, fn in (('eager', EAGER), ('lazy', LAZY)):
            SelfDistillSRModel.reduce_loss_dict = fn
            for data, batch in (('data', None), ('alone', on_device)):
                seconds = dw._free_running(model, batches, opt, device, ITERS, it, batch)
                it += ITERS
                rates[f'{mode} {data}'].append(ITERS * train_opt['batch_size_per_gpu'] / seconds)
    SelfDistillSRModel.reduce_loss_dict = EAGER
    steps = []
    for _ in range(50):  # the synchronised step, as the benchmark's training rows time it
        model.feed_data(on_device)
        sync(device)
        start = time.perf_counter()
        dw._step(model, opt, it)
        sync(device)
        steps.append(time.perf_counter() - start)
        it += 1
    return dict(options=opt_path, rounds=ROUNDS, iters=ITERS, workers=WORKERS,
                samples_per_s={k: statistics.median(v) for k, v in rates.items()}, all_rounds=rates,
                synced_step_samples_per_s=train_opt['batch_size_per_gpu'] / statistics.median(steps))


if __name__ == '__main__':
    print(json.dumps([measure(path, torch.device('cuda')) for path in sys.argv[1:]], indent=1))
