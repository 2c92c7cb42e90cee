"""tools/ablate.py on a tiny plan: every kind of run trains from YAML, is evaluated, summarised, resumed and skipped."""
import copy
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from os import path as osp

import pytest
import yaml
from conftest import REPO, TINY_OPT, alive, children, make_paired_folder, wait_gone, write_opt

from srdistill.ablation import carry
from srdistill.ablation.ablate_cli import main
from srdistill.ablation.plan import expand, load_plan, select_jobs
from srdistill.ablation.runner import AblationRunner, TrainingStopped
from srdistill.ablation.summary import write_summary
from srdistill.archs.multi_exit_srresnet_arch import MultiExitSRResNet
from srdistill.utils.errors import UserError
from srdistill.utils.job_lock import fcntl, job_lock

# Test-set Y PSNR (dB) / SSIM of each tiny run's last checkpoint (num_feat 4 nets, a few Adam steps at lr 2e-4, seed
# 0), measured on this CPU. Training is float32 and not bit-reproducible across CPUs, but a few steps move a weight by
# at most lr per step and another CPU's last-bit differences by far less: 0.01 dB / 1e-4 (the runs span 0.013 dB).
TEST_METRICS = {
    'external__s0__compute': (31.6393, 0.74005),
    'external__s0__iterations': (31.6430, 0.74028),
    'hint_at__s0__compute': (31.6461, 0.74048),
    'hint_at__s0__iterations': (31.6461, 0.74048),
    'inherit__s0__compute': (31.6454, 0.74013),
    'inherit__s0__iterations': (31.6412, 0.74023),
    'inherit_source__s0__compute': (31.6389, 0.74020),
    'inherit_source__s0__iterations': (31.6507, 0.74059),
    'plain__s0__compute': (31.6377, 0.73964),
    'plain__s0__iterations': (31.6389, 0.74020),
    'scratch__s0__compute': (31.6374, 0.73975),
    'scratch__s0__iterations': (31.6381, 0.74024),
    'sd__s0__compute': (31.6461, 0.74048),
    'sd__s0__iterations': (31.6461, 0.74048),
}


def _plan(tmp_path, seeds=(0, ), budgets=('iterations', 'compute')):
    data = tmp_path / 'data'
    train_gt, train_lq = make_paired_folder(str(data / 'train'), n=4, size=48)
    # an evaluation set in the benchmark layout tools/prepare_data.py writes: <root>/<name>/HR, LR_bicubic/X4
    val_gt, val_lq = make_paired_folder(str(data / 'bench' / 'Val'), n=2, size=48, seed=5)
    os.makedirs(data / 'bench' / 'Val' / 'LR_bicubic')
    shutil.move(val_lq, str(data / 'bench' / 'Val' / 'LR_bicubic' / 'X4'))
    make_paired_folder(str(data / 'bench' / 'Test'), n=2, size=48, seed=9)
    os.makedirs(data / 'bench' / 'Test' / 'LR_bicubic')
    shutil.move(str(data / 'bench' / 'Test' / 'LR'), str(data / 'bench' / 'Test' / 'LR_bicubic' / 'X4'))
    base = copy.deepcopy(TINY_OPT)
    base['datasets']['train'].update(dataroot_gt=train_gt, dataroot_lq=train_lq)
    del base['datasets']['val']
    base['logger']['use_tb_logger'] = False
    base['network_g'].update(num_feat=4)
    write_opt(tmp_path / 'base.yml', base)
    pixel = {'pixel_opt': {'pixel_weight': 1.0, 'distill_weight': 0}}
    plan = {
        'name': 'tiny', 'base': str(tmp_path / 'base.yml'), 'iterations': 4, 'budgets': list(budgets),
        'compute_reference': 'sd', 'seeds': list(seeds), 'student': 2, 'val_freq': 2,
        'evaluate': {'datasets': ['Val', 'Test'], 'dataroot': str(data / 'bench'), 'select_on': 'Val'},
        'runs': {
            'scratch': {'network_g': {'num_block': 2, 'exits': []}, 'train': pixel},
            'inherit_source': {'report': False, 'iter_scale': 0.5, 'network_g': {'exits': []}, 'train': pixel},
            'inherit': {'iter_scale': 0.5, 'init_from': {'run': 'inherit_source', 'depth': 2},
                        'network_g': {'num_block': 2, 'exits': []}, 'train': pixel},
            'plain': {'network_g': {'exits': []}, 'train': pixel},
            'sd': {},
            'external': {'teacher_from': 'plain', 'train': {'pixel_opt': {'teacher': 'external'}}},
            'hint_at': {'network_g': {'hint_adapters': True}, 'train': {'distill_opts': [
                {'type': 'HintLoss', 'loss_weight': 0.01}, {'type': 'AttentionTransferLoss', 'loss_weight': 1.5}]}},
        },
        'comparisons': [['hint_at', 'sd']],
    }
    path = tmp_path / 'plan.yml'
    with open(path, 'w') as f:
        yaml.safe_dump(plan, f, sort_keys=False)
    return str(path)


def test_equal_compute_gives_cheaper_runs_more_iterations(tmp_path):
    plan = load_plan(_plan(tmp_path))
    jobs = {j['name']: j for j in expand(plan)}
    sd, scratch = jobs['sd__s0__compute'], jobs['scratch__s0__compute']
    assert scratch['step_macs'] < sd['step_macs']
    assert scratch['iterations'] == round(4 * sd['step_macs'] / scratch['step_macs']) > 4
    assert abs(scratch['own_macs'] - sd['own_macs']) <= scratch['step_macs']  # equal compute, to one step
    # the weight-inherit pipeline spends half on the deep source and half on fine-tuning, in total the reference's
    inherit = jobs['inherit__s0__compute']
    assert abs(inherit['total_macs'] - sd['own_macs']) <= 2 * jobs['inherit_source__s0__compute']['step_macs']
    # identical training is not run twice; an external teacher's forward and training count towards the student
    assert sd['same_as'] == 'sd__s0__iterations' and scratch['same_as'] is None
    ext = jobs['external__s0__iterations']
    assert ext['step_macs'] > jobs['sd__s0__iterations']['step_macs']
    assert ext['total_macs'] == ext['own_macs'] + jobs['plain__s0__iterations']['total_macs']


def test_cut_keeps_first_blocks_and_final_tail():
    deep = MultiExitSRResNet(num_feat=4, num_block=4, exits=[2], hint_adapters=True)
    cut = deep.cut_state_dict(2)
    shallow = MultiExitSRResNet(num_feat=4, num_block=2, exits=[])
    shallow.load_state_dict(cut, strict=True)
    assert (cut['conv_last.weight'] == deep.conv_last.weight).all()  # the final tail, not exit 2's
    assert (cut['body.1.conv1.weight'] == deep.body[1].conv1.weight).all()


def test_ablation_trains_evaluates_summarises_and_resumes(tmp_path, capsys):
    plan_path = _plan(tmp_path)
    out = str(tmp_path / 'out')
    assert main(['-opt', plan_path, '--out', out]) == 0
    printed = capsys.readouterr().out
    results = {n[:-5]: json.load(open(osp.join(out, 'results', n))) for n in os.listdir(osp.join(out, 'results'))}
    assert len(results) == 14  # 7 runs x 2 budgets
    for name, r in results.items():
        assert r['last']['Test']['psnr'] == pytest.approx(TEST_METRICS[name][0], abs=0.01), name
        assert r['last']['Test']['ssim'] == pytest.approx(TEST_METRICS[name][1], abs=1e-4), name
        assert r['best_iter'] in [c[0] for c in r['curve']]
    assert results['plain__s0__iterations']['output'] == 'e4'  # no exit 2 in a plain network: its final output
    # each job's line names the output it reports (a plain network's final one, not the plan's student)
    assert 'done plain__s0__iterations: e4 Val last' in printed and 'done sd__s0__iterations: e2 Val last' in printed
    assert results['sd__s0__compute']['same_as'] == 'sd__s0__iterations'
    assert results['scratch__s0__compute']['iterations'] > 4
    # the feature terms and the external teacher really trained
    log = open(osp.join(out, 'experiments', 'hint_at__s0__iterations',
                        [f for f in os.listdir(osp.join(out, 'experiments', 'hint_at__s0__iterations'))
                         if f.startswith('train_')][0])).read()
    assert 'l_hint_e2' in log and 'l_at_e2' in log
    ext_opt = yaml.safe_load(open(osp.join(out, 'options', 'external__s0__iterations.yml')))
    assert ext_opt['path']['pretrain_network_t'].endswith('plain__s0__iterations/models/net_g_latest.pth')
    inherit_opt = yaml.safe_load(open(osp.join(out, 'options', 'inherit__s0__iterations.yml')))
    assert osp.isfile(inherit_opt['path']['pretrain_network_g'])
    # outputs: one table per budget, csv, json, plot
    table = open(osp.join(out, 'table.md')).read()
    assert '### Equal iterations' in table and '### Equal training compute' in table and 'inherit_source' not in table
    assert 'Δ Test last vs scratch' in table and printed.count('\n| sd | 1 | 4 |') == 2  # a row per budget
    assert '### Paired per-image differences against `scratch`' in table and '\n| iterations | sd | 1 |' in table
    assert osp.getsize(osp.join(out, 'ablation.png')) > 10000 and osp.isfile(osp.join(out, 'table.csv'))
    assert '### Learning curves: paired gap to `scratch`' in table and osp.getsize(osp.join(out, 'curves.png')) > 10000
    # the last line names the files this summary wrote, and only those (no family plot without a family)
    assert printed.rstrip().splitlines()[-1] == (f'written: {out}/table.md, table.csv, summary.json, ablation.png, '
                                                  'differences.json, comparisons.json, curves.json, curves.png')
    # the plan's other comparison, seed by seed, in the same form
    assert '### Other paired comparisons' in table and '\n| iterations | hint_at − sd | 1 |' in table
    compared = json.load(open(osp.join(out, 'comparisons.json')))
    assert {(c['run'], c['reference'], c['dataset']) for c in compared if c['budget'] == 'iterations'} == {
        ('hint_at', 'sd', 'Val'), ('hint_at', 'sd', 'Test')}
    test = [c for c in compared if c['budget'] == 'iterations' and c['dataset'] == 'Test'][0]
    assert test['mean'] == pytest.approx(results['hint_at__s0__iterations']['last']['Test']['psnr']
                                         - results['sd__s0__iterations']['last']['Test']['psnr'], abs=1e-6)
    gap = json.load(open(osp.join(out, 'curves.json')))['runs']['sd']['gap']
    assert gap['mean'][-1] == pytest.approx(results['sd__s0__iterations']['curve'][-1][1]
                                            - results['scratch__s0__iterations']['curve'][-1][1])

    # rerun: everything is done, nothing trains again
    stamp = os.path.getmtime(osp.join(out, 'results', 'sd__s0__iterations.json'))
    assert main(['-opt', plan_path, '--out', out]) == 0
    assert '14 of 14 jobs done, 0 to run' in capsys.readouterr().out
    assert os.path.getmtime(osp.join(out, 'results', 'sd__s0__iterations.json')) == stamp

    # an interrupted job (training states, no final weights, no result) resumes from its last state
    os.remove(osp.join(out, 'results', 'scratch__s0__compute.json'))
    os.remove(osp.join(out, 'experiments', 'scratch__s0__compute', 'models', 'net_g_latest.pth'))
    assert main(['-opt', plan_path, '--out', out, '--only', 'scratch']) == 0
    log = open(osp.join(out, 'logs', 'scratch__s0__compute.log')).read()
    assert 'Resuming training from epoch' in log
    assert osp.isfile(osp.join(out, 'results', 'scratch__s0__compute.json'))



def test_one_budget_alone_still_copies_its_equal_iterations_twin(tmp_path, capsys):
    """``--budgets compute`` keeps the equal-iterations twin a compute job copies, instead of training it again."""
    plan_path = _plan(tmp_path, budgets=('iterations', ))
    assert main(['-opt', plan_path, '--only', 'sd', 'scratch', '--budgets', 'compute', '--dry-run']) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    assert sorted(rows) == ['scratch__s0__compute', 'sd__s0__compute', 'sd__s0__iterations']
    assert rows['sd__s0__compute'].endswith('same training as sd__s0__iterations')
    jobs = expand(load_plan(plan_path))
    assert [j['name'] for j in select_jobs(jobs, runs=['inherit'], budgets=['iterations'])] == [
        'inherit_source__s0__iterations', 'inherit__s0__iterations']
    with pytest.raises(UserError, match=r"--budgets: \['flops'\] unknown"):
        main(['-opt', plan_path, '--budgets', 'flops', '--dry-run'])
    plan = yaml.safe_load(open(plan_path))
    del plan['compute_reference']
    yaml.safe_dump(plan, open(tmp_path / 'no_ref.yml', 'w'))
    with pytest.raises(UserError, match='--budgets compute: .*no_ref.yml names no run as `compute_reference`'):
        main(['-opt', str(tmp_path / 'no_ref.yml'), '--budgets', 'compute', '--dry-run'])

def test_bad_plans_are_named(tmp_path):
    plan_path = _plan(tmp_path)
    plan = yaml.safe_load(open(plan_path))
    plan['runs']['inherit']['init_from']['run'] = 'nope'
    bad = tmp_path / 'bad.yml'
    yaml.safe_dump(plan, open(bad, 'w'))
    with pytest.raises(UserError, match=r"runs.inherit.init_from names 'nope'"):
        load_plan(str(bad))
    with pytest.raises(UserError, match='ablation plan not found'):
        load_plan(str(tmp_path / 'missing.yml'))
    with pytest.raises(UserError, match=r"--only: \['nope'\]"):
        main(['-opt', plan_path, '--only', 'nope', '--dry-run'])
    plan = yaml.safe_load(open(plan_path))
    plan['comparisons'] = [['sd', 'nope']]
    yaml.safe_dump(plan, open(bad, 'w'))
    with pytest.raises(UserError, match=r"option `comparisons`: \['nope'\] not among the runs"):
        load_plan(str(bad))
    plan['comparisons'] = [['sd']]
    yaml.safe_dump(plan, open(bad, 'w'))
    with pytest.raises(UserError, match=r"option `comparisons`: \['sd'\] is not a \[run, reference\] pair"):
        load_plan(str(bad))


def test_a_plan_extends_another(tmp_path):
    parent = _plan(tmp_path)
    child = tmp_path / 'child.yml'
    yaml.safe_dump({'extends': parent, 'name': 'wide', 'iterations': 8,
                    'runs': {'sd': {'network_g': {'num_feat': 8}}}}, open(child, 'w'))
    plan, base = load_plan(str(child)), load_plan(parent)
    assert plan['name'] == 'wide' and plan['iterations'] == 8 and plan['seeds'] == base['seeds']
    assert plan['runs']['sd'] == {'network_g': {'num_feat': 8}} and plan['runs']['scratch'] == base['runs']['scratch']
    assert plan['evaluate'] == base['evaluate'] and 'extends' not in plan
    jobs = {j['name']: j for j in expand(plan)}
    assert jobs['sd__s0__iterations']['opt']['network_g']['num_feat'] == 8
    assert jobs['sd__s0__iterations']['iterations'] == 8

    yaml.safe_dump({'extends': str(tmp_path / 'gone.yml'), 'name': 'x'}, open(child, 'w'))
    with pytest.raises(UserError, match=r'gone.yml: ablation plan not found \(option `extends` of .*child.yml\)'):
        load_plan(str(child))
    loop = tmp_path / 'loop.yml'
    yaml.safe_dump({'extends': str(child)}, open(loop, 'w'))
    yaml.safe_dump({'extends': str(loop)}, open(child, 'w'))
    with pytest.raises(UserError, match='a cycle'):
        load_plan(str(child))


def test_the_wider_budgets_are_the_cpu_plan_wider_and_longer(monkeypatch):
    monkeypatch.chdir(osp.dirname(osp.dirname(osp.abspath(__file__))))
    for cpu, gpu in (('protocol_v2_cpu', 'protocol_v2_gpu'), ('protocol_v2_cpu_family', 'protocol_v2_gpu_family')):
        c, g = load_plan(f'options/{cpu}.yml'), load_plan(f'options/{gpu}.yml')
        assert g['iterations'] == 20000 and g['val_freq'] == 1000 and g['name'] == f'{gpu}_x4'
        assert g['overrides']['network_g'] == {'num_feat': 64} and c['overrides']['network_g'] == {'num_feat': 32}
        for key in ('runs', 'seeds', 'budgets', 'evaluate', 'student', 'base'):
            assert g[key] == c[key], key
        assert g['overrides']['datasets'] == c['overrides']['datasets']
    # question 1 at 64 channels on the CPU: the CPU plan with the GPU plan's width, nothing else
    c, w = load_plan('options/protocol_v2_cpu.yml'), load_plan('options/protocol_v2_cpu_c64.yml')
    assert w['name'] == 'protocol_v2_cpu_c64_x4' and w['overrides']['network_g'] == {'num_feat': 64}
    assert {k: v for k, v in w.items() if k not in ('name', 'overrides', 'path')} == \
        {k: v for k, v in c.items() if k not in ('name', 'overrides', 'path')}
    assert w['overrides']['datasets'] == c['overrides']['datasets']


def test_carry_after_stops_running_jobs_at_a_checkpoint_and_carries_them(tmp_path, capsys, monkeypatch):
    """--carry-after: past its time, a running job stops at its next checkpoint with that checkpoint's state written,
    is packed as --carry packs it, and the files to commit are named; no result is written and nothing fails."""
    monkeypatch.setattr(AblationRunner, 'poll_s', 0.2)
    plan_path = _plan(tmp_path, budgets=('iterations', ))
    out = str(tmp_path / 'out')
    # 3 s after the start; 5000 tiny iterations would take minutes, so the run returning says the training was stopped
    assert main(['-opt', plan_path, '--out', out, '--only', 'sd', '--iterations', '5000', '--carry-after', '0.05']) == 0
    printed = capsys.readouterr().out
    assert 'stopped at iteration' in printed and 'git add ' in printed
    assert not osp.exists(osp.join(out, 'results', 'sd__s0__iterations.json'))
    exp = osp.join(out, 'experiments', 'sd__s0__iterations')
    last = carry.latest_state(exp)[0]
    assert 0 < last < 5000
    carried = set(os.listdir(osp.join(out, 'resume', 'sd__s0__iterations')))
    latest = {f'{last}.state', f'net_g_{last}.pth'}
    assert latest <= carried  # the state to resume from, its weights, and the best checkpoint's weights if another
    assert len(carried - latest) <= 1 and all(re.fullmatch(r'net_g_\d+\.pth', f) for f in carried - latest)
    progress = json.load(open(osp.join(out, 'progress', 'sd__s0__iterations.json')))
    assert [int(it) for it in progress['checkpoints']] == list(range(2, last + 1, 2))
    with open(osp.join(out, 'logs', 'sd__s0__iterations.log')) as f:
        assert 'training stopped at iteration' in f.read()
    # weights saved without their state (stopped between the two saves) are not scored: the resumed run retrains them
    newer = osp.join(exp, 'models', f'net_g_{last + 2}.pth')
    shutil.copy(osp.join(exp, 'models', f'net_g_{last}.pth'), newer)
    assert main(['-opt', plan_path, '--out', out, '--only', 'sd', '--iterations', '5000', '--carry']) == 0
    progress = json.load(open(osp.join(out, 'progress', 'sd__s0__iterations.json')))
    assert max(int(it) for it in progress['checkpoints']) == last


def test_carry_after_stops_at_the_last_checkpoint_before_its_time(tmp_path, monkeypatch):
    """A slow job is carried by the time asked: it stops at a checkpoint when the next one, as far after it as it
    came after the one before (or after the job's start), would come after that time."""
    plan = load_plan(_plan(tmp_path, budgets=('iterations', )))
    job = expand(plan)[0]
    clock = [1000.0]
    monkeypatch.setattr(time, 'time', lambda: clock[0])

    def hook(carry_after):  # a runner started now, its job too
        runner = AblationRunner(plan, [job], str(tmp_path / 'out'), log=lambda *_: None, carry_after=carry_after)
        return runner._carry_hook(job)

    states = osp.join(tmp_path, 'out', 'experiments', job['name'], 'training_states')
    os.makedirs(states)
    for it in (500, 1000, 1500):
        open(osp.join(states, f'{it}.state'), 'w').close()
    steady = hook(100)  # until 1100
    clock[0] = 1030
    assert steady(500, 'w') is False  # the next at 1060
    clock[0] = 1060
    assert steady(1000, 'w') is False  # the next at 1090, before 1100
    clock[0] = 1090
    assert steady(1500, 'w') is True  # the next at 1120: stop here, 10 s early rather than 20 s late
    clock[0] = 2000
    slow = hook(100)  # until 2100
    clock[0] = 2060
    assert slow(500, 'w') is True  # 60 s since the start: the next at 2120, so the first checkpoint is the last
    clock[0] = 3000
    late = hook(10)  # until 3010
    clock[0] = 3011
    assert late(500, 'w') is True  # past its time: the first checkpoint after it
    assert AblationRunner(plan, [job], str(tmp_path / 'out'), log=lambda *_: None)._carry_hook(job) is None


def test_no_job_starts_after_one_was_stopped_for_carry_after(tmp_path, monkeypatch):
    """A job stopped for --carry-after stops before the time asked (its next checkpoint would come after it), and the
    runner used to start the next job then, only to stop it at its first checkpoint, past the time. Now the jobs not
    started are left for the next run of the command."""
    plan = load_plan(_plan(tmp_path, budgets=('iterations', )))
    jobs = [j for j in expand(plan) if j['run'] in ('scratch', 'sd')]
    logged, started = [], []

    def run_job(job, on_checkpoint=None):
        started.append(job['name'])
        raise TrainingStopped(job['name'], 500)

    runner = AblationRunner(plan, jobs, str(tmp_path / 'out'), log=logged.append, carry_after=3600)
    monkeypatch.setattr(runner, 'run_job', run_job)
    assert runner.run() == []
    assert started == [jobs[0]['name']] and runner.stopped == started
    assert any('1 jobs not started' in line for line in logged)
    # without a stop, every job runs
    runner = AblationRunner(plan, jobs, str(tmp_path / 'out'), log=logged.append, carry_after=3600)
    monkeypatch.setattr(runner, 'run_job', lambda job, on_checkpoint=None: started.append(job['name']))
    assert runner.run() == [] and started[1:] == [j['name'] for j in jobs]


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='reads the process table in /proc')
def test_kill_of_a_runner_ends_its_training_and_data_workers(tmp_path):
    """``kill <pid>`` of tools/ablate.py used to leave its training process (and data-loader workers) training on, side
    by side with the next runner's. Now the runner ends them first, and says so."""
    plan_path = _plan(tmp_path, budgets=('iterations', ))
    base = yaml.safe_load(open(tmp_path / 'base.yml'))
    base['datasets']['train']['num_worker_per_gpu'] = 2
    write_opt(tmp_path / 'base.yml', base)
    out = tmp_path / 'out'
    runner = subprocess.Popen([sys.executable, osp.join(REPO, 'tools', 'ablate.py'), '-opt', plan_path, '--out',
                               str(out), '--only', 'sd', '--iterations', '100000'], stderr=subprocess.PIPE, text=True)
    log = out / 'experiments' / 'sd__s0__iterations'
    deadline = time.time() + 120
    while time.time() < deadline and not any(log.glob('train_*.log')):  # the training process has started
        time.sleep(0.5)
    trainers = children(runner.pid)
    workers = [w for t in trainers for w in children(t)]
    deadline = time.time() + 60
    while time.time() < deadline and len(workers) < 2:  # and its data loader
        time.sleep(0.5)
        workers = [w for t in trainers for w in children(t)]
    try:
        assert len(trainers) == 1 and len(workers) >= 2, (trainers, workers)  # 2 data workers (+ helpers)
        runner.terminate()
        assert runner.wait(timeout=90) == 128 + signal.SIGTERM
        assert 'SIGTERM: ended 1 training process(es)' in runner.stderr.read()
        assert not alive(trainers[0])
        assert wait_gone(workers, 20) == []
    finally:  # a failure leaves no training behind
        for pid in [runner.pid] + trainers + workers:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.skipif(fcntl is None, reason='the job lock needs fcntl (not on Windows)')
def test_a_job_another_runner_holds_is_refused_not_trained_twice(tmp_path, capsys):
    """Two runners on one output folder with overlapping --only: the second refuses the job the first holds, names the
    holder, and trains nothing in its experiment folder."""
    plan_path = _plan(tmp_path, budgets=('iterations', ))
    out = tmp_path / 'out'
    with job_lock(str(out / 'experiments' / 'sd__s0__iterations.lock'), 'sd__s0__iterations'):
        assert main(['-opt', plan_path, '--out', str(out), '--only', 'sd']) == 1
        printed = capsys.readouterr()
        assert f'FAILED sd__s0__iterations: another runner (pid {os.getpid()}) is training' in printed.out
        assert not (out / 'experiments' / 'sd__s0__iterations').exists()
        with pytest.raises(UserError, match='another runner'):  # any second holder, even in this process
            with job_lock(str(out / 'experiments' / 'sd__s0__iterations.lock'), 'sd__s0__iterations'):
                pass
    # released: the lock file left behind does not block (the OS holds the lock, not the file), and the job trains
    assert main(['-opt', plan_path, '--out', str(out), '--only', 'sd']) == 0
    assert (out / 'results' / 'sd__s0__iterations.json').is_file()


@pytest.mark.parametrize('flag', ['--stop-after', '--carry-after'])
def test_a_negative_time_limit_is_refused(tmp_path, capsys, flag):
    with pytest.raises(SystemExit) as exit_:
        main(['-opt', 'plan.yml', flag, '-5'])
    assert exit_.value.code == 2 and f'{flag}: -5.0 minutes' in capsys.readouterr().err


def test_an_unfinished_job_is_carried_to_a_fresh_checkout(tmp_path, capsys):
    """--carry packs the latest state and the scores so far; a checkout without experiments/ goes on from them."""
    plan_path = _plan(tmp_path, budgets=('iterations', ))
    out = str(tmp_path / 'out')
    assert main(['-opt', plan_path, '--out', out, '--only', 'sd']) == 0
    assert not osp.exists(osp.join(out, 'progress', 'sd__s0__iterations.json'))  # a finished job keeps no progress
    assert not osp.exists(osp.join(out, 'resume', 'sd__s0__iterations'))
    done = json.load(open(osp.join(out, 'results', 'sd__s0__iterations.json')))
    # make it an interrupted job: its result, last weights and last state gone; the state of iteration 2 is left
    exp = osp.join(out, 'experiments', 'sd__s0__iterations')
    os.remove(osp.join(out, 'results', 'sd__s0__iterations.json'))
    for name in ('models/net_g_latest.pth', 'models/net_g_4.pth', 'training_states/4.state'):
        if osp.exists(osp.join(exp, name)):
            os.remove(osp.join(exp, name))
    assert main(['-opt', plan_path, '--out', out, '--only', 'sd', '--carry']) == 0
    printed = capsys.readouterr().out
    carried = sorted(os.listdir(osp.join(out, 'resume', 'sd__s0__iterations')))
    assert carried == ['2.state', 'net_g_2.pth'] and 'git add ' in printed
    progress = json.load(open(osp.join(out, 'progress', 'sd__s0__iterations.json')))
    assert list(progress['checkpoints']) == ['2'] and progress['selected_on'] == 'Val'
    score_2 = progress['checkpoints']['2']['means']['e2']['psnr']
    assert score_2 == pytest.approx(done['curve'][0][1], abs=1e-9)  # the same weights, the same score

    shutil.rmtree(osp.join(out, 'experiments'))  # a fresh checkout: only what git carried is left
    assert main(['-opt', plan_path, '--out', out, '--only', 'sd']) == 0
    assert 'resuming from the state carried at iteration 2' in capsys.readouterr().out
    assert 'Resuming training from epoch' in open(osp.join(out, 'logs', 'sd__s0__iterations.log')).read()
    result = json.load(open(osp.join(out, 'results', 'sd__s0__iterations.json')))
    assert [it for it, _ in result['curve']] == [2, 4] and result['curve'][0][1] == score_2
    assert not osp.exists(osp.join(out, 'progress', 'sd__s0__iterations.json'))
    assert not osp.exists(osp.join(out, 'resume', 'sd__s0__iterations'))
    assert main(['-opt', plan_path, '--out', out, '--only', 'sd', '--carry']) == 0
    assert 'nothing to carry' in capsys.readouterr().out


def test_the_summary_names_the_seeds_of_its_results_not_of_the_command(tmp_path):
    """`--seeds 1 2` runs two seeds, but the tables cover every result in the folder: the protocol line says so."""
    src = osp.join(REPO, 'docs', 'protocol_v2', 'protocol_v2_cpu_x4', 'results')
    os.makedirs(tmp_path / 'results')
    for name in ('scratch__s0__iterations.json', 'scratch__s3__iterations.json', 'sd_l1__s0__iterations.json'):
        shutil.copy(osp.join(src, name), tmp_path / 'results' / name)
    plan = load_plan(osp.join(REPO, 'options', 'protocol_v2_cpu.yml'))
    plan['seeds'] = [1, 2]  # what `--seeds 1 2` leaves in the plan
    rows = write_summary(plan, str(tmp_path))
    table = open(tmp_path / 'table.md').read()
    assert "mean ± sample std over each run's seeds ([0, 3] in results/)" in table
    assert {(r['run'], len(r['seeds'])) for r in rows} >= {('scratch', 2), ('sd_l1', 1)}
