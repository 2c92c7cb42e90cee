"""``tools/tune.py``: search loss weights, exit placement and method switches with Optuna, on a validation split.

Each trial trains the options it draws (through the ablation runner: the same training, resuming and evaluation as
``tools/ablate.py``) and scores the student exit's best PSNR on ``select_on``. Rerun the command to go on: the study is
stored in ``<out>/study.db``, finished trials are kept and an interrupted one resumes. To resume it in a fresh
checkout (the training folders under ``<out>/experiments`` are not committed), run ``--carry`` before the sitting
ends and commit the files it prints, as with ``tools/ablate.py --carry``.
"""
import argparse
import csv
import json
import sys
from os import path as osp

import yaml

from srdistill.ablation.runner import AblationRunner, TrainingStopped
from srdistill.tuning.plot import plot_trials, trial_records
from srdistill.tuning.study import (
    baseline_job,
    interrupted_jobs,
    load_tune_plan,
    open_study,
    run_fragment,
    runner_plan,
    study_path,
    suggest,
    trial_job,
)
from srdistill.utils import process


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog='tools/tune.py', description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog='Example: python tools/tune.py -opt options/tune_291.yml --trials 20')
    p.add_argument('-opt', required=True, help='tuning file (YAML)')
    p.add_argument('--trials', type=int, default=None,
                   help='finished trials (complete or pruned) to reach (default: the file\'s `trials`)')
    p.add_argument('--out', default=None, help='output folder (default: experiments/tuning/<name>)')
    p.add_argument('--stop-after', type=float, default=None, metavar='MIN',
                   help='start no new trial after this many minutes (the running one finishes); rerun to go on')
    p.add_argument('--device', default=None, help='evaluation device (default: cuda when present, else cpu)')
    p.add_argument('--summary-only', action='store_true',
                   help='only (re)write trials.csv, trials.png, best.json and best_run.yml')
    p.add_argument('--carry', action='store_true',
                   help='pack the unfinished trials\' training states for the next sitting and print the files to '
                        'commit (a fresh checkout then resumes them); trains nothing')
    return p.parse_args(argv)


def objective_fn(plan, runner):
    """The Optuna objective: train the trial's options (or reuse its result), return the student's best PSNR."""

    import optuna

    def objective(trial):
        values = suggest(trial, plan)
        job = trial_job(plan, values)
        trial.set_user_attr('job', job['name'])
        trial.set_user_attr('values', values)  # the real values (a categorical parameter's param is its index)
        reported = {}

        def on_checkpoint(it, path):  # score the checkpoint on the validation split; True stops the training
            progress = runner.score_selection(job, {it: path})
            reported[it] = runner.selection_curve({it: progress[it]})[1][0][1]
            trial.report(reported[it], it)
            return trial.should_prune()

        if not runner.is_done(job):
            try:
                runner.run_job(job, on_checkpoint)
            except TrainingStopped as stop:
                curve = [[it, reported[it]] for it in sorted(reported)]
                trial.set_user_attr('curve', curve)
                trial.set_user_attr('pruned_at', [stop.iteration, reported[stop.iteration]])
                print(f'trial {trial.number} pruned at iteration {stop.iteration}: {plan["select_on"]} PSNR '
                      f'{reported[stop.iteration]:.3f} dB, below the finished trials at that iteration')
                raise optuna.TrialPruned() from None
        with open(runner.result_path(job)) as f:
            result = json.load(f)
        for it, psnr in result['curve']:
            if it not in reported:
                trial.report(psnr, it)
        trial.set_user_attr('best_iter', result['best_iter'])
        trial.set_user_attr('curve', result['curve'])
        return max(psnr for _, psnr in result['curve'])

    return objective


def baseline_curve(out):
    """The baseline's validation curve ``[[iteration, PSNR], ...]`` (``<out>/results/baseline.json``), or None before
    it ran."""
    path = osp.join(out, 'results', 'baseline.json')
    if not osp.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)['curve']


def baseline_psnr(out):
    """The baseline's best PSNR on the objective's set, or None before it ran."""
    curve = baseline_curve(out)
    return None if curve is None else max(psnr for _, psnr in curve)


def write_summary(study, out, plan):
    """``trials.csv`` (every trial: state, objective, its gap to the baseline when there is one, parameters),
    ``trials.png`` (every trial's validation curve and result against the baseline, :mod:`srdistill.tuning.plot`),
    ``best.json`` and ``best_run.yml`` (the best trial as a run of an ablation plan, to confirm it over seeds at a
    longer budget). Returns the best trial or None."""
    from optuna.trial import TrialState
    trials = study.get_trials(deepcopy=False)
    names = sorted({k for t in trials for k in t.params})
    base = baseline_psnr(out)
    with open(osp.join(out, 'trials.csv'), 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(['number', 'state', 'psnr', 'gap_to_baseline', 'best_iter', 'pruned_at', 'pruned_psnr', 'job']
                        + names)
        for t in trials:
            # a pruned trial's value (Optuna: its last reported one) is at an earlier iteration: pruned_* columns
            value = t.value if t.state == TrialState.COMPLETE else None
            gap = '' if value is None or base is None else f'{value - base:+.4f}'
            pruned_at, pruned_psnr = t.user_attrs.get('pruned_at') or ('', None)
            writer.writerow([t.number, t.state.name, '' if value is None else f'{value:.4f}', gap,
                             t.user_attrs.get('best_iter', ''), pruned_at,
                             '' if pruned_psnr is None else f'{pruned_psnr:.4f}', t.user_attrs.get('job', '')]
                            + [t.params.get(n, '') for n in names])
    records = trial_records(trials, list(plan['switches']))
    if records:
        plot_trials(records, osp.join(out, 'trials.png'), baseline_curve(out),
                    f'{plan["name"]}: e{plan["student"]} on {plan["select_on"]}, {plan["iterations"]} iterations, '
                    f'seed {plan["seed"]}; {len(records)} trials')
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    if not done:
        return None
    best = max(done, key=lambda t: t.value)
    with open(osp.join(out, 'best.json'), 'w') as f:
        json.dump({'number': best.number, 'psnr': best.value, 'params': best.params, 'job': best.user_attrs.get('job'),
                   'complete_trials': len(done), 'baseline_psnr': base,
                   'gap_to_baseline': None if base is None else best.value - base}, f, indent=1)
    write_best_run(best, plan, osp.join(out, 'best_run.yml'))
    return best


def write_best_run(best, plan, path):
    """The best trial as ``{name: fragment}`` for an ablation plan's ``runs`` (:func:`run_fragment`)."""
    values = best.user_attrs.get('values')
    if values is None:  # a trial of a study begun before the values were stored
        return
    run = {'label': f'tuned: trial {best.number} of {plan["name"]}', **run_fragment(plan, values)}
    with open(path, 'w') as f:
        f.write(f'# The best trial of {plan["name"]} (trial {best.number}: e{plan["student"]} {plan["select_on"]} PSNR '
                f'{best.value:.4f} dB, {plan["iterations"]} iterations, seed {plan["seed"]}) as a run of an '
                'ablation plan.\n# Paste it under `runs:` of a plan with the same base and overrides (e.g. '
                'options/protocol_v2_cpu.yml) and\n# confirm it against scratch over seeds: tools/ablate.py -opt '
                '<plan> --only scratch tuned --seeds 0 1 2 3 4\n')
        yaml.safe_dump({'tuned': run}, f, sort_keys=False, default_flow_style=None)


def carry(plan, out, device=None):
    """``--carry``: the ablation runner's carry (srdistill/ablation/carry.py) for the unfinished trials."""
    files = AblationRunner(runner_plan(plan), interrupted_jobs(plan, out), out, device=device).carry_over()
    if not files:
        print('nothing to carry: no unfinished trial has a training state.')
        return 0
    files.append(study_path(out))  # it holds the unfinished trial, queued again on the next run
    size = sum(osp.getsize(f) for f in files) / 2**20
    print(f'to carry the unfinished trials to the next sitting, commit ({size:.1f} MB):\n  git add '
          + ' '.join(osp.relpath(f) for f in files))
    return 0


def main(argv=None):
    import optuna
    from optuna.trial import TrialState
    args = parse_args(argv)
    plan = load_tune_plan(args.opt)
    out = args.out or osp.join('experiments', 'tuning', plan['name'])
    if args.carry:
        return carry(plan, out, args.device)
    study = open_study(plan, out)
    if not args.summary_only:
        target = args.trials if args.trials is not None else plan.get('trials', 20)
        complete = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, )))
        done = complete + len(study.get_trials(deepcopy=False, states=(TrialState.PRUNED, )))
        runner = AblationRunner(runner_plan(plan), [], out, device=args.device)
        print(f'tuning {plan["name"]}: {done} of {target} trials finished ({complete} complete, {done - complete} '
              f'pruned); study in {out}/study.db')
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        baseline = baseline_job(plan)
        with process.ending_children():  # kill <pid> / Ctrl-C end the training processes too
            if baseline is not None and not runner.is_done(baseline):  # trained once, before the trials
                print(f'training the baseline ({baseline["label"]}) on the trials\' budget')
                runner.run_job(baseline)
            if baseline is not None:
                print(f'baseline: {baseline["label"]}, {plan["select_on"]} PSNR {baseline_psnr(out):.3f} dB')
            if target > done:
                study.optimize(objective_fn(plan, runner), n_trials=target - done, catch=(RuntimeError, ),
                               timeout=None if args.stop_after is None else 60 * args.stop_after)
    best = write_summary(study, out, plan)
    if best is None:
        print('no complete trial yet', file=sys.stderr)
        return 1
    base = baseline_psnr(out)
    gap = '' if base is None else f' ({best.value - base:+.3f} dB against the baseline)'
    print(f'best: trial {best.number}, e{plan["student"]} {plan["select_on"]} PSNR {best.value:.3f} dB{gap}, '
          f'{best.params}; written: {out}/trials.csv, best.json, best_run.yml')
    return 0

