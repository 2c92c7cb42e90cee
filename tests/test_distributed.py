"""Distributed training on CPU: 2 processes with torchrun and Gloo, through BasicSR's pipeline (fixed by compat)."""
import json
import subprocess
import sys
import textwrap

import pytest
from conftest import write_opt

from srdistill.compat import normalize_argv

PROBE = textwrap.dedent('''
    import json, sys
    import torch, torch.distributed as dist, yaml
    import srdistill
    from srdistill.compat import init_dist
    from basicsr.data import build_dataloader, build_dataset
    from basicsr.data.data_sampler import EnlargedSampler
    from basicsr.models import build_model

    opt_path, root, out = sys.argv[1:4]
    opt = yaml.safe_load(open(opt_path))
    init_dist('pytorch')
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(rank)  # different initial weights per rank: DDP must make them equal
    opt.update(dist=True, rank=rank, world_size=world, is_train=True, root_path=root)
    opt['path'].update(models=root, training_states=root, visualization=root, experiments_root=root, log=root)
    train_opt = dict(opt['datasets']['train'], phase='train', scale=opt['scale'])
    dataset = build_dataset(train_opt)
    loader = build_dataloader(dataset, train_opt, num_gpu=0, dist=True, sampler=EnlargedSampler(dataset, world, rank),
                              seed=0)
    model = build_model(opt)
    seen = []
    for it, batch in enumerate(loader, start=1):
        model.feed_data(batch)
        model.optimize_parameters(it)
        seen += [p.rsplit('/', 1)[1] for p in batch['gt_path']]
    flat = torch.cat([p.detach().flatten() for p in model.net_g.parameters()])
    gathered = [torch.zeros_like(flat) for _ in range(world)]
    dist.all_gather(gathered, flat)
    all_seen = [None] * world
    dist.all_gather_object(all_seen, seen)
    if rank == 0:
        json.dump({'max_diff': max((g - gathered[0]).abs().max().item() for g in gathered), 'seen': all_seen,
                   'type': type(model.net_g).__name__}, open(out, 'w'))
    del model  # DDP holds the process group: release it before the group is destroyed, not at interpreter exit
    dist.destroy_process_group()
''')


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
    rank0, rank1 = map(set, probe['seen'])
    # 4 training images, batch 2 per process: each rank sees its own 2, together all 4
    assert len(rank0) == len(rank1) == 2 and rank0.isdisjoint(rank1) and len(rank0 | rank1) == 4


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
