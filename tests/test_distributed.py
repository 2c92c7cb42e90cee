"""Distributed training on CPU: 2 processes with torchrun and Gloo, through BasicSR's pipeline (fixed by compat)."""
import json
import subprocess
import sys
import textwrap

import pytest
import torch
from conftest import write_opt

from srdistill.compat import normalize_argv

PROBE = textwrap.dedent('''
    import json, os, sys
    import torch, torch.distributed as dist, yaml
    import srdistill
    from srdistill.compat import init_dist
    from basicsr.data import build_dataloader, build_dataset
    from basicsr.data.data_sampler import EnlargedSampler
    from basicsr.models import build_model

    opt_path, root, out = sys.argv[1:4]
    epochs = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    opt = yaml.safe_load(open(opt_path))
    distributed = 'LOCAL_RANK' in os.environ  # under torchrun; else one plain process, as tools/train.py without it
    if distributed:
        init_dist('pytorch')
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    torch.manual_seed(rank)  # different initial weights per rank: DDP must make them equal (rank 0's)
    opt.update(dist=distributed, rank=rank, world_size=world, is_train=True, root_path=root)
    opt['path'].update(models=root, training_states=root, visualization=root, experiments_root=root, log=root)
    train_opt = dict(opt['datasets']['train'], phase='train', scale=opt['scale'])
    dataset = build_dataset(train_opt)
    sampler = EnlargedSampler(dataset, world, rank)  # as BasicSR's train pipeline, with or without dist
    loader = build_dataloader(dataset, train_opt, num_gpu=0, dist=distributed, sampler=sampler, seed=0)
    model = build_model(opt)
    net = model.get_bare_model(model.net_g)
    init = {k: v.clone() for k, v in net.state_dict().items()}  # on rank 0 the weights DDP broadcasts
    seen, it = [], 0  # seen: the file names of each iteration's batch on this rank
    for epoch in range(epochs):
        sampler.set_epoch(epoch)  # as BasicSR's train pipeline: a new order each epoch
        for batch in loader:
            it += 1
            model.feed_data(batch)
            model.optimize_parameters(it)
            seen.append([p.rsplit('/', 1)[1] for p in batch['gt_path']])
    flat = torch.cat([p.detach().flatten() for p in net.parameters()])
    gathered, all_seen = [flat], [seen]
    if distributed:
        gathered = [torch.zeros_like(flat) for _ in range(world)]
        dist.all_gather(gathered, flat)
        all_seen = [None] * world
        dist.all_gather_object(all_seen, seen)
    if rank == 0:
        torch.save({'init': init, 'trained': net.state_dict()}, out + '.pth')
        json.dump({'max_diff': max((g - gathered[0]).abs().max().item() for g in gathered), 'seen': all_seen,
                   'type': type(model.net_g).__name__, 'iterations': it}, open(out, 'w'))
    if distributed:
        del model  # DDP holds the process group: release it before the group is destroyed, not at interpreter exit
        dist.destroy_process_group()
''')


# Max |weight difference| allowed between 2 DDP processes x batch b and 1 process x batch 2b after 4 Adam steps:
# measured 1.1e-8 (the weights moved up to 7.8e-4). Adam divides by sqrt(v) + 1e-8, so float32 noise in a gradient
# (~1e-12 here) grows by at most lr / eps = 2e4: ~2e-8, well inside 1e-6 on any CPU
DDP_VS_ONE_TOLERANCE = 1e-6


def _torchrun(script, *args, cwd):
    return subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2', script,
                           *map(str, args)], cwd=str(cwd), capture_output=True, text=True, timeout=600)


def test_ranks_hold_identical_weights_and_split_the_batch(tiny_opt, tmp_path):
    (tmp_path / 'probe.py').write_text(PROBE)
    opt_path = write_opt(tmp_path / 'tiny.yml', tiny_opt)
    result = _torchrun(tmp_path / 'probe.py', opt_path, tmp_path, tmp_path / 'probe.json', cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    # channels_last (the default) is applied before DDP builds its gradient buckets
    assert 'Grad strides do not match bucket view strides' not in result.stderr
    probe = json.load(open(tmp_path / 'probe.json'))
    assert probe['type'] == 'DistributedDataParallel' and probe['max_diff'] == 0.0
    rank0, rank1 = ({name for names in seen for name in names} for seen in probe['seen'])
    # 4 training images, batch 2 per process: each rank sees its own 2, together all 4
    assert len(rank0) == len(rank1) == 2 and rank0.isdisjoint(rank1) and len(rank0 | rank1) == 4


def test_two_processes_at_batch_b_train_as_one_process_at_batch_2b(tiny_opt, tmp_path):
    """2 DDP processes x batch 1 reach the weights of 1 plain process x batch 2: 4 Adam steps, 2 epochs of 4 images.

    Which samples: BasicSR's EnlargedSampler draws one permutation per epoch (seeded by the epoch, so the same on every
    rank) and gives rank r its entries r, r + W, r + 2W, ...; one process (W = 1) takes the whole permutation in order.
    So the W ranks' i-th batches of b together hold exactly the one process's i-th batch of W * b (in another order
    within the batch), as long as the enlarged dataset size is a multiple of W (else the sampler pads with repeated
    indices and the sets differ). What each sample is: the random crop and flips draw from each process's own `random`
    state, so they are equal only by construction: the crop is the whole 48-pixel image, flips and rotations are off.
    DDP then averages the ranks' gradients of their batch-mean losses, the gradient of the mean over all 2 samples.
    """
    tiny_opt['datasets']['train'].update(gt_size=48, use_hflip=False, use_rot=False, batch_size_per_gpu=1)
    two = write_opt(tmp_path / 'two.yml', tiny_opt)
    tiny_opt['datasets']['train']['batch_size_per_gpu'] = 2
    one = write_opt(tmp_path / 'one.yml', tiny_opt)
    probe = tmp_path / 'probe.py'
    probe.write_text(PROBE)
    result = _torchrun(probe, two, tmp_path, tmp_path / 'two.json', 2, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    result = subprocess.run([sys.executable, str(probe), one, str(tmp_path), str(tmp_path / 'one.json'), '2'],
                            cwd=str(tmp_path), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    ddp, plain = (json.load(open(tmp_path / f'{n}.json')) for n in ('two', 'one'))
    assert ddp['type'] == 'DistributedDataParallel' and plain['type'] == 'MultiExitSRResNet'
    assert ddp['iterations'] == plain['iterations'] == 4 and ddp['max_diff'] == 0.0
    # the same samples at every iteration: rank 0's and rank 1's image together are the one process's batch of 2
    assert [sorted(r0 + r1) for r0, r1 in zip(*ddp['seen'])] == [sorted(batch) for batch in plain['seen'][0]]
    assert all(len(set(r0 + r1)) == 2 for r0, r1 in zip(*ddp['seen']))
    ddp_w, plain_w = (torch.load(tmp_path / f'{n}.json.pth', weights_only=True) for n in ('two', 'one'))
    assert all(torch.equal(ddp_w['init'][k], plain_w['init'][k]) for k in plain_w['init'])  # both from seed 0
    diff = max((ddp_w['trained'][k] - plain_w['trained'][k]).abs().max().item() for k in plain_w['trained'])
    moved = max((plain_w['trained'][k] - plain_w['init'][k]).abs().max().item() for k in plain_w['trained'])
    # float32: the two sums of per-sample gradients differ in order (batch of 2 vs two batches of 1 and an all-reduce)
    assert diff <= DDP_VS_ONE_TOLERANCE and moved > 1e-4, (diff, moved)


def test_two_process_training_writes_once_and_resumes(tiny_opt, tmp_path):
    root = tmp_path / 'proj'
    root.mkdir()
    launcher = tmp_path / 'train.py'
    launcher.write_text(f'from srdistill.train import main\nmain({str(root)!r})\n')
    opt_path = write_opt(tmp_path / 'tiny.yml', tiny_opt)
    result = _torchrun(launcher, '-opt', opt_path, '--launcher', 'pytorch', cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    exp = root / 'experiments' / 'tiny_sd'
    logs = sorted(exp.glob('train_*.log'))
    assert len(logs) == 1 and 'World size (gpu number): 2' in logs[0].read_text()  # only rank 0 logs
    assert sorted(p.name for p in (exp / 'models').iterdir()) == ['net_g_2.pth', 'net_g_4.pth', 'net_g_latest.pth']
    assert len(list((root / 'tb_logger' / 'tiny_sd').glob('events.*'))) == 1

    result = _torchrun(launcher, '-opt', opt_path, '--launcher', 'pytorch', '--auto_resume', '--force_yml',
                       'train:total_iter=6', cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    log = '\n'.join(p.read_text() for p in exp.glob('train_*.log'))
    assert 'Resuming training from epoch: ' in log and 'iter:       6,' in log
    assert (exp / 'models' / 'net_g_6.pth').exists()


@pytest.mark.parametrize('argv, expected', [
    (['train.py', '--local-rank=1', '-opt', 'x.yml'], ['train.py', '--local_rank=1', '-opt', 'x.yml']),
    (['train.py', '--local-rank', '1'], ['train.py', '--local_rank', '1']),
    (['train.py', '--local_rank=0'], ['train.py', '--local_rank=0']),
])
def test_legacy_launch_local_rank_is_accepted(argv, expected):
    assert normalize_argv(argv) == expected
