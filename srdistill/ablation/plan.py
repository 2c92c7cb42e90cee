"""An ablation plan: runs x seeds x budgets expanded into training jobs, each a complete BasicSR options dict.

The plan file (``options/ablation_*.yml``) names a base training options file, a budget of ``iterations``, the seeds,
the exit under study, and the runs as overrides of the base. A plan may ``extends: <plan file>``: it is merged over
that plan (dicts merge, anything else replaces), so a budget's plan names only what differs (the GPU budget's
``options/protocol_v2_gpu.yml`` extends the CPU budget's). Two budgets make the comparison fair:

- ``iterations``: every run trains ``iter_scale * iterations`` iterations;
- ``compute``: every run gets ``iter_scale`` times the multiply-adds that the reference run (``compute_reference``)
  spends in ``iterations`` iterations; a cheaper training step gets more iterations.

A training step is counted as 3x its forward multiply-adds (forward + backward, the usual convention) plus one
forward of an external teacher when there is one, plus the extra passes of ``train.upcycle_opt`` (a no-gradient label
pass, and the students' passes on the extra inputs at 3x); the loss functions themselves are not counted (under 1%).
A run may start from another run's weights (``init_from``: the exit cut from a deep network for the weight-inherit
baseline, or with ``prune: <ratio>`` (and ``mode``, ``round_to``) that run's exit itself, channel-pruned:
docs/pruning.md) or learn from another run's network (``teacher_from``: an external teacher); the source's own
training compute is then added to the run's ``total`` compute. Every run is compared with ``scratch``, paired per
image and seed (:mod:`srdistill.ablation.stats`); ``comparisons: [[run, reference], ...]`` adds other pairs (question
2: exit 8 of a deeper central model against the 32-block one's).
"""
import copy
import os
from os import path as osp

import torch
import yaml
from basicsr.utils.registry import ARCH_REGISTRY, LOSS_REGISTRY

from srdistill.ablation.family import check_family
from srdistill.utils.errors import UserError

BUDGETS = ('iterations', 'compute')
RUN_KEYS = {'iter_scale', 'init_from', 'teacher_from', 'report', 'label'}


def deep_merge(base, override):
    """``base`` updated recursively with ``override`` (dicts merge; anything else replaces). Returns a new dict."""
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _read_plan(path, seen=()):
    """The plan file's dict, merged over the plan it ``extends`` (recursively; a child's keys win, dicts merge)."""
    if not osp.isfile(path):
        where = f' (option `extends` of {seen[-1]})' if seen else ''
        raise UserError(f'{path}: ablation plan not found{where}.')
    with open(path) as f:
        plan = yaml.safe_load(f) or {}
    parent = plan.pop('extends', None)
    if parent is None:
        return plan
    if osp.abspath(parent) in {osp.abspath(p) for p in (*seen, path)}:
        raise UserError(f'{path}: option `extends`: {parent} extends this plan again (a cycle).')
    return deep_merge(_read_plan(parent, (*seen, path)), plan)


def load_plan(path):
    """Read and check an ablation plan file. Returns the plan dict with defaults filled in.

    Raises:
        UserError: A missing file or key, or a run that refers to an unknown run.
    """
    plan = _read_plan(path)
    for key in ('name', 'base', 'iterations', 'seeds', 'student', 'runs'):
        if key not in plan:
            raise UserError(f'{path}: option `{key}` is missing (see options/ablation_291.yml).')
    if not osp.isfile(plan['base']):
        raise UserError(f'{path}: option `base`: {plan["base"]} not found.')
    if not isinstance(plan['iterations'], int) or plan['iterations'] < 1:
        raise UserError(f'{path}: option `iterations` must be a positive integer, got {plan["iterations"]!r}.')
    plan.setdefault('budgets', ['iterations'])
    bad = [b for b in plan['budgets'] if b not in BUDGETS]
    if bad:
        raise UserError(f'{path}: option `budgets`: {bad} unknown; use {list(BUDGETS)}.')
    if 'compute' in plan['budgets'] and plan.get('compute_reference') not in plan['runs']:
        raise UserError(f'{path}: option `compute_reference` must name one of the runs for the compute budget.')
    plan.setdefault('val_freq', max(1, plan['iterations'] // 4))
    plan.setdefault('evaluate', {})
    plan['evaluate'].setdefault('datasets', ['Set5', 'Set14'])
    plan['evaluate'].setdefault('dataroot', 'datasets')
    plan['evaluate'].setdefault('select_on', plan['evaluate']['datasets'][0])
    runs = plan['runs']
    for name, run in runs.items():
        run = runs[name] = run or {}
        for key in ('init_from', 'teacher_from'):
            source = run.get(key)
            source = source.get('run') if isinstance(source, dict) else source
            if source is not None and source not in runs:
                raise UserError(f'{path}: runs.{name}.{key} names {source!r}, which is not a run.')
    _check_comparisons(plan, path)
    check_family(plan, path)
    with open(plan['base']) as f:
        plan['base_opt'] = yaml.safe_load(f)
    plan['path'] = path
    return plan


def _check_comparisons(plan, path):
    """``comparisons``: a list of ``[run, reference]`` pairs compared like every run against scratch (table.md,
    ``comparisons.json``), e.g. question 2's exit 8 of SRResNet-50 against SRResNet-32's."""
    pairs = plan.setdefault('comparisons', [])
    if not isinstance(pairs, list):
        raise UserError(f'{path}: option `comparisons` must be a list of [run, reference] pairs, got {pairs!r}.')
    for pair in pairs:
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
            raise UserError(f'{path}: option `comparisons`: {pair!r} is not a [run, reference] pair.')
        unknown = [name for name in pair if name not in plan['runs']]
        if unknown:
            raise UserError(f'{path}: option `comparisons`: {unknown} not among the runs ({list(plan["runs"])}).')


def run_options(plan, run_name):
    """The training options of one run (before seed/budget): base, then ``overrides``, then the run's own keys."""
    run = plan['runs'][run_name]
    opt = deep_merge(plan['base_opt'], plan.get('overrides'))
    return deep_merge(opt, {k: v for k, v in run.items() if k not in RUN_KEYS})


def step_macs(opt):
    """Multiply-adds of one training step of ``opt``: 3 x forward (all outputs) x batch, + a teacher's forward."""
    from srdistill.archs.cost import forward_macs
    gt_size = opt['datasets']['train']['gt_size']
    batch = opt['datasets']['train']['batch_size_per_gpu']
    lr_size = (gt_size // opt['scale'], ) * 2

    def build(net_opt):
        net_opt = dict(net_opt)
        with torch.device('meta'):
            return ARCH_REGISTRY.get(net_opt.pop('type'))(**net_opt)

    net = build(opt['network_g'])
    macs = 3 * forward_macs(net, lr_size, exit='all' if hasattr(net, 'exits') else None) * batch
    if opt.get('network_t'):
        macs += forward_macs(build(opt['network_t']), lr_size) * batch
    upcycle = opt['train'].get('upcycle_opt')
    if upcycle:  # its extra passes: the zoom-in label, the students on the zoom-in and zoom-out inputs
        upcycle = dict(upcycle)
        macs += LOSS_REGISTRY.get(upcycle.pop('type'))(**upcycle).forward_macs(net, lr_size) * batch
    return macs


def _source(run, key):
    source = run.get(key)
    return source.get('run') if isinstance(source, dict) else source


def job_name(run_name, seed, budget):
    return f'{run_name}__s{seed}__{budget}'


def expand(plan):
    """Every job of the plan, sources before the runs that need them.

    Returns:
        list[dict]: Jobs with ``name``, ``run``, ``seed``, ``budget``, ``iterations``, ``step_macs``, ``own_macs``,
        ``total_macs``, ``deps`` (job names), ``init_from`` / ``teacher_from`` (job names or None), ``same_as`` (the
        equal-iterations job whose training this one is identical to, or None), ``opt`` (options, without the paths
        that depend on sources' outputs).
    """
    ref_macs = step_macs(run_options(plan, plan['compute_reference'])) if 'compute' in plan['budgets'] else None
    order = _topological(plan)
    jobs = []
    for budget in plan['budgets']:
        for seed in plan['seeds']:
            for run_name in order:
                run = plan['runs'][run_name]
                opt = run_options(plan, run_name)
                macs = step_macs(opt)
                scale = float(run.get('iter_scale', 1.0))
                if budget == 'iterations':
                    iters = round(scale * plan['iterations'])
                else:
                    iters = round(scale * plan['iterations'] * ref_macs / macs)
                sources = {k: _source(run, k) for k in ('init_from', 'teacher_from')}
                init = run['init_from'] if isinstance(run.get('init_from'), dict) else {}
                if init.get('prune') is not None:  # the pruned exit of the source: its network is known now
                    opt['network_g'] = _pruned_network(plan, run_name, init)
                    macs = step_macs(opt)
                jobs.append(dict(
                    name=job_name(run_name, seed, budget), run=run_name, seed=seed, budget=budget, iterations=iters,
                    step_macs=macs, own_macs=macs * iters, opt=opt, report=run.get('report', True),
                    label=run.get('label', run_name),
                    init_from=sources['init_from'] and job_name(sources['init_from'], seed, budget),
                    init_depth=init.get('depth'), init_prune=init.get('prune'), init_round_to=init.get('round_to', 4),
                    init_mode=init.get('mode', 'uniform'),
                    teacher_from=sources['teacher_from'] and job_name(sources['teacher_from'], seed, budget)))
    by_name = {j['name']: j for j in jobs}
    for job in jobs:
        job['deps'] = list(dict.fromkeys(d for d in (job['init_from'], job['teacher_from']) if d))  # once each
        if job['teacher_from']:  # one teacher forward per step
            teacher = by_name[job['teacher_from']]
            job['step_macs'] += teacher['step_macs'] // 3
            job['own_macs'] = job['step_macs'] * job['iterations']
        job['total_macs'] = job['own_macs'] + sum(by_name[d]['total_macs'] for d in job['deps'])
    for job in jobs:  # a compute-budget job identical to its equal-iterations twin is not trained twice
        twin = by_name.get(job_name(job['run'], job['seed'], 'iterations'))
        job['same_as'] = None
        if job['budget'] != 'iterations' and twin is not None and _same_training(job, twin, by_name):
            job['same_as'] = twin['name']
            job['deps'] = [twin['name']]
    return jobs



def select_jobs(jobs, runs=None, budgets=None):
    """The jobs of some runs and budgets (None: all), with every job they need (sources, and the equal-iterations
    twin whose result a compute-budget job copies), in the order of ``jobs``."""
    names = {j['name'] for j in jobs
             if (runs is None or j['run'] in runs) and (budgets is None or j['budget'] in budgets)}
    by_name = {j['name']: j for j in jobs}
    stack = list(names)
    while stack:
        for dep in by_name[stack.pop()]['deps']:
            if dep not in names:
                names.add(dep)
                stack.append(dep)
    return [j for j in jobs if j['name'] in names]

def _pruned_network(plan, run_name, init):
    """``network_g`` of a run that starts from the source run's exit ``init['depth']`` pruned at ``init['prune']``
    (:func:`~srdistill.pruning.channel_pruning.pruned_options`)."""
    from srdistill.archs.multi_exit import build_network
    from srdistill.pruning.channel_pruning import MODES, pruned_options
    where = f'{plan["path"]}: runs.{run_name}.init_from'
    ratio, depth = init['prune'], init.get('depth')
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 <= ratio < 1:
        raise UserError(f'{where}.prune must be a pruning ratio in [0, 1), got {ratio!r}.')
    source = run_options(plan, init['run'])['network_g']
    with torch.device('meta'):
        net = build_network(source)
    if depth not in getattr(net, 'depths', ()):
        raise UserError(f'{where}.depth must be an output of run {init["run"]!r} ({list(net.depths)}), got {depth!r}.')
    exit_opt = net.exit_network_opt(depth)
    if exit_opt['type'] not in ('MSRResNet', 'PrunedMSRResNet'):
        raise UserError(f'{where}: exit {depth} of run {init["run"]!r} is a {exit_opt["type"]}; pruning takes an '
                        'SRResNet exit with the full head (network_g.exit_head: full).')
    mode = init.get('mode', 'uniform')
    if mode not in MODES:
        raise UserError(f'{where}.mode must be one of {list(MODES)}, got {mode!r}.')
    # a global pruning has the multiply-adds of the uniform one; its widths are known once the source is trained
    return pruned_options(exit_opt, ratio, init.get('round_to', 4))


def _same_training(job, twin, by_name):
    if job['iterations'] != twin['iterations']:
        return False
    for key in ('init_from', 'teacher_from'):
        a, b = job[key], twin[key]
        if (a is None) != (b is None) or (a and not _same_training(by_name[a], by_name[b], by_name)):
            return False
    return True


def _topological(plan):
    runs, done, order = plan['runs'], set(), []

    def visit(name, stack=()):
        if name in done:
            return
        if name in stack:
            raise UserError(f'{plan["path"]}: runs form a cycle through {name!r} (init_from / teacher_from).')
        for key in ('init_from', 'teacher_from'):
            source = _source(runs[name], key)
            if source:
                visit(source, stack + (name, ))
        done.add(name)
        order.append(name)

    for name in runs:
        visit(name)
    return order


def training_options(plan, job, source_paths):
    """The complete BasicSR options of a job (seed, iterations, schedule, checkpoints, sources' weights)."""
    opt = copy.deepcopy(job['opt'])
    iters = job['iterations']
    opt['name'] = job['name']
    opt['manual_seed'] = job['seed']
    train = opt['train']
    train['total_iter'] = iters
    sched = train.get('scheduler', {})
    if sched.get('type') == 'CosineAnnealingRestartLR':
        sched['periods'], sched['restart_weights'] = [iters], [1]
    elif sched.get('type') == 'MultiStepLR':
        total = plan['base_opt']['train']['total_iter']
        sched['milestones'] = [round(m * iters / total) for m in sched['milestones']]
    freq = min(plan['val_freq'], iters)
    opt.setdefault('val', {})['val_freq'] = freq
    opt['logger']['save_checkpoint_freq'] = freq
    opt['logger']['print_freq'] = min(opt['logger'].get('print_freq', 100), freq)
    opt.setdefault('path', {})
    if job['init_from']:
        opt['path']['pretrain_network_g'] = source_paths[job['init_from']]['inherit']
        opt['path']['strict_load_g'] = True
    if job['teacher_from']:
        opt['network_t'] = copy.deepcopy(source_paths[job['teacher_from']]['network_g'])
        opt['path']['pretrain_network_t'] = source_paths[job['teacher_from']]['latest']
    return opt


def write_options(opt, path):
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        yaml.safe_dump(opt, f, sort_keys=False)
