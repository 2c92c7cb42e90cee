"""Hyper-parameter search for self-distillation (``tools/tune.py``) with Optuna, on a validation split only.

A tuning file (``options/tune_*.yml``) names a base training options file with overrides (as an ablation plan), the
training budget of a trial, the student exit, the validation set the objective is measured on, and a search space:

- ``switches``: methods turned on or off per trial, each an options fragment merged into the trial's options;
- ``space``: parameters by dotted option path (``train.pixel_opt.distill_weight``), each ``float`` (``low``, ``high``,
  ``log``), ``int`` or ``categorical`` (``choices``: any YAML values, lists and mappings included), optionally only
  ``when`` a switch is on.

``enqueue`` (optional) lists trials to run first, each a mapping of the same names (``switch.<name>`` for a switch,
off when absent; a categorical parameter by its value): e.g. the paper's recipe, so that the study has a reference
on the same split and budget.

``pruner`` (optional) stops a trial early whose validation curve trails the finished trials' (e.g.
``{type: StoredCurvesPruner, n_startup_trials: 3, n_warmup_steps: 1000}``: below their median at a checkpoint from
iteration 1000 on; :mod:`srdistill.tuning.pruner`). Its training is stopped, the trial is marked PRUNED with the
iteration and value it was stopped at, and its checkpoints' scores stay in ``progress/<job>.json``.

``baseline`` (optional) is an options fragment trained once on the trials' budget and seed, never tuned: e.g. the
student network alone, so that every trial is also read as a gap to the number it must beat (``trials.csv``,
``best.json``).

A trial's options are the base, the ``overrides``, then the trial's switches and parameters merged as an ablation
plan merges a run (mappings merge, anything else replaces; a mapping chosen by a categorical parameter is therefore
merged into the base's). So the best trial, written as an ablation run (``best_run.yml``), trains with exactly the
trial's options when ``tools/ablate.py`` confirms it over more seeds and a longer budget.

The objective is the student's PSNR on ``select_on`` at the trial's best checkpoint, a split carved out of the
training images (``tools/prepare_data.py split``). Test sets are refused there: choosing on them would make the
reported numbers optimistic. The study lives in ``<out>/study.db`` (SQLite): rerunning the command resumes it, and a
trial that was interrupted is run again with the same parameters, its training resumed from its last state.
"""
import copy
import hashlib
import json
import os
from os import path as osp

import yaml

from srdistill.ablation.plan import deep_merge
from srdistill.tuning.pruner import make_pruner
from srdistill.utils.errors import UserError

TEST_SETS = ('Set5', 'Set14', 'BSD100', 'B100', 'Urban100', 'Manga109')
KINDS = ('float', 'int', 'categorical')


def load_tune_plan(path):
    """Read and check a tuning file. Returns the plan with defaults and ``base_opt``.

    Raises:
        UserError: A missing key, a test set as objective, or a malformed search space.
    """
    if not osp.isfile(path):
        raise UserError(f'{path}: tuning file not found.')
    with open(path) as f:
        plan = yaml.safe_load(f) or {}
    for key in ('name', 'base', 'iterations', 'student', 'select_on'):
        if key not in plan:
            raise UserError(f'{path}: option `{key}` is missing (see options/tune_291.yml).')
    if plan['select_on'] in TEST_SETS:
        raise UserError(f'{path}: option `select_on`: {plan["select_on"]} is a test set. Tune on a validation split '
                        'of the training images (`python tools/prepare_data.py split --source datasets/291` makes '
                        '291_val), and report test sets only with tools/evaluate.py or tools/ablate.py.')
    if not osp.isfile(plan['base']):
        raise UserError(f'{path}: option `base`: {plan["base"]} not found.')
    plan.setdefault('seed', 0)
    plan.setdefault('dataroot', 'datasets')
    plan.setdefault('val_freq', max(1, plan['iterations'] // 4))
    plan.setdefault('switches', {})
    plan.setdefault('space', {})
    plan.setdefault('sampler', {'type': 'TPESampler', 'seed': plan['seed']})
    if not plan['space'] and not plan['switches']:
        raise UserError(f'{path}: `space` and `switches` are both empty: nothing to tune.')
    for name, param in plan['space'].items():
        where = f'{path}: space.{name}'
        if not isinstance(param, dict) or param.get('type') not in KINDS:
            raise UserError(f'{where}: needs `type` {list(KINDS)}.')
        if param['type'] == 'categorical' and not param.get('choices'):
            raise UserError(f'{where}: a categorical parameter needs `choices`.')
        if param['type'] != 'categorical' and not ('low' in param and 'high' in param and param['low'] < param['high']):
            raise UserError(f'{where}: needs `low` < `high`.')
        if param.get('when') is not None and param['when'] not in plan['switches']:
            raise UserError(f'{where}: `when: {param["when"]}` is not one of the switches {list(plan["switches"])}.')
    if plan.get('baseline') is not None and not isinstance(plan['baseline'], dict):
        raise UserError(f'{path}: option `baseline` must be an options fragment (a mapping), e.g. '
                        '{network_g: {num_block: 8, exits: []}, train: {pixel_opt: {distill_weight: 0}}}.')
    make_pruner(plan.get('pruner'), path)  # checked now, not after the baseline has trained
    plan['enqueue'] = [enqueued_params(plan, values, f'{path}: enqueue[{i}]')
                       for i, values in enumerate(plan.get('enqueue') or [])]
    with open(plan['base']) as f:
        plan['base_opt'] = yaml.safe_load(f)
    plan['path'] = path
    return plan


def enqueued_params(plan, values, where):
    """An ``enqueue`` entry as Optuna parameters (switches off unless named; a categorical value as its index)."""
    if not isinstance(values, dict):
        raise UserError(f'{where}: needs a mapping of parameter names to values.')
    params = {f'switch.{name}': False for name in plan['switches']}
    for name, value in values.items():
        if name.startswith('switch.') and name in params:
            params[name] = bool(value)
        elif name not in plan['space']:
            raise UserError(f'{where}: {name!r} is neither a parameter of `space` nor a switch '
                            f'({["switch." + n for n in plan["switches"]]}).')
        elif plan['space'][name]['type'] == 'categorical':
            choices = plan['space'][name]['choices']
            if value not in choices:
                raise UserError(f'{where}: {name} = {value!r} is not one of its choices {choices}.')
            params[name] = choices.index(value)
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f'{where}: {name} = {value!r} is not a number.')
        elif not plan['space'][name]['low'] <= value <= plan['space'][name]['high']:
            raise UserError(f'{where}: {name} = {value!r} is outside [{plan["space"][name]["low"]}, '
                            f'{plan["space"][name]["high"]}].')
        else:
            params[name] = value
    for name in params:
        when = plan['space'].get(name, {}).get('when')
        if when and not params[f'switch.{when}']:
            raise UserError(f'{where}: {name} is drawn only when switch.{when} is on; add `switch.{when}: true` or '
                            'leave it out.')
    return params


def set_path(opt, dotted, value):
    """``opt`` with ``opt[a][b][c] = value`` for ``dotted = 'a.b.c'`` (intermediate mappings created)."""
    node = opt
    keys = dotted.split('.')
    for key in keys[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[keys[-1]] = copy.deepcopy(value)
    return opt


def suggest(trial, plan):
    """Draw a trial's switches and parameters. Returns ``{name: value}`` (real values, not choice indices)."""
    values = {}
    for name in plan['switches']:
        values[f'switch.{name}'] = trial.suggest_categorical(f'switch.{name}', [False, True])
    for name, param in plan['space'].items():
        if param.get('when') and not values[f'switch.{param["when"]}']:
            continue
        if param['type'] == 'float':
            values[name] = trial.suggest_float(name, param['low'], param['high'], log=bool(param.get('log')))
        elif param['type'] == 'int':
            values[name] = trial.suggest_int(name, param['low'], param['high'], log=bool(param.get('log')))
        else:  # Optuna stores primitives: draw an index, keep the value
            index = trial.suggest_categorical(name, list(range(len(param['choices']))))
            values[name] = param['choices'][index]
    return values


def run_fragment(plan, values):
    """What a trial changes over the plan's base and ``overrides``: the switches that are on, then each parameter.

    It is the trial as a run of an ablation plan (``runs: {name: fragment}``), which is how the best trial is confirmed
    over several seeds at the full budget (``best_run.yml``, :func:`srdistill.tuning.tune_cli.write_summary`).
    """
    fragment = {}
    for name, switch in plan['switches'].items():
        if values.get(f'switch.{name}'):
            fragment = deep_merge(fragment, switch)
    for name, value in values.items():
        if not name.startswith('switch.'):
            set_path(fragment, name, value)
    return fragment


def trial_options(plan, values):
    """The training options of a trial: base, ``overrides``, then the trial's :func:`run_fragment`."""
    return deep_merge(deep_merge(plan['base_opt'], plan.get('overrides')), run_fragment(plan, values))


def trial_name(values):
    """A name fixed by the values: the same parameters resume the same training folder."""
    digest = hashlib.sha1(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:10]
    return f'trial_{digest}'


def trial_job(plan, values):
    """A job for :class:`srdistill.ablation.runner.AblationRunner` (one seed, the equal-iterations budget)."""
    opt = trial_options(plan, values)
    return dict(name=trial_name(values), run=trial_name(values), label=trial_name(values), seed=plan['seed'],
                budget='iterations', iterations=plan['iterations'], step_macs=0, own_macs=0, total_macs=0, opt=opt,
                report=True, init_from=None, init_depth=None, teacher_from=None, deps=[], same_as=None)


def baseline_job(plan):
    """The plan's ``baseline`` as a job on the trials' budget and seed (named ``baseline``), or None."""
    fragment = dict(plan.get('baseline') or {})
    if not fragment:
        return None
    label = fragment.pop('label', 'baseline')
    opt = deep_merge(deep_merge(plan['base_opt'], plan.get('overrides')), fragment)
    return dict(trial_job(plan, {}), name='baseline', run='baseline', label=label, opt=opt)


def runner_plan(plan):
    """The fields of an ablation plan that the runner reads, for a tuning plan."""
    return dict(name=plan['name'], base_opt=plan['base_opt'], val_freq=plan['val_freq'], student=plan['student'],
                evaluate={'datasets': [plan['select_on']], 'dataroot': plan['dataroot'],
                          'select_on': plan['select_on']})


def make_sampler(plan, offset=0):
    """The plan's sampler; its ``seed`` plus ``offset`` (the trials already in the study), so that a resumed study
    does not draw again what the first sitting's sampler drew (a reseeded sampler repeats its random startup trials)."""
    import optuna
    spec = dict(plan['sampler'])
    if spec.get('seed') is not None:
        spec['seed'] = spec['seed'] + offset
    kind = spec.pop('type')
    if not hasattr(optuna.samplers, kind):
        raise UserError(f'{plan["path"]}: sampler type {kind!r} is not an Optuna sampler (e.g. TPESampler, '
                        'RandomSampler, GPSampler).')
    return getattr(optuna.samplers, kind)(**spec)


def study_path(out_dir):
    """The file that stores a study: ``<out_dir>/study.db`` (SQLite)."""
    return osp.join(out_dir, 'study.db')


def storage_url(out_dir):
    """The Optuna storage URL of :func:`study_path`."""
    return f'sqlite:///{osp.abspath(study_path(out_dir))}'


def interrupted_jobs(plan, out_dir):
    """The runner jobs of the trials that have not finished: RUNNING (a tuner at work, or killed) or FAIL (queued
    again by :func:`open_study`). The study is only read.

    Raises:
        UserError: When ``<out_dir>`` holds no study.
    """
    import optuna
    from optuna.trial import TrialState
    if not osp.isfile(study_path(out_dir)):
        raise UserError(f'{out_dir}: no study.db here; give the --out of the study to carry.')
    study = optuna.load_study(study_name=plan['name'], storage=storage_url(out_dir))
    jobs = {}
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.FAIL)):
        if 'values' in trial.user_attrs:  # set when its training started
            job = trial_job(plan, trial.user_attrs['values'])
            jobs[job['name']] = job
    return list(jobs.values())


def open_study(plan, out_dir):
    """The study stored in ``<out_dir>/study.db``, created or resumed; interrupted trials are queued again."""
    import optuna
    from optuna.trial import TrialState
    os.makedirs(out_dir, exist_ok=True)
    study = optuna.create_study(study_name=plan['name'], storage=storage_url(out_dir),
                                direction='maximize', load_if_exists=True,
                                pruner=make_pruner(plan.get('pruner'), plan['path']))
    trials = study.get_trials(deepcopy=False)
    study.sampler = make_sampler(plan, offset=len(trials))
    if not trials:  # a new study: the plan's reference trials first
        for params in plan['enqueue']:
            study.enqueue_trial(params, user_attrs={'enqueued': True})
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, )):
        # left RUNNING by a killed process (one tuner per study): fail it and queue its parameters, so that the same
        # training folder (named by the parameters) resumes from its last state
        study.tell(trial.number, state=TrialState.FAIL)
        study.enqueue_trial(trial.params, user_attrs={'resumes': trial.number})
    return study
