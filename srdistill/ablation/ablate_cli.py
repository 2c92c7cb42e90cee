"""``tools/ablate.py``: train and evaluate an ablation plan (fair baselines, distillation methods, seeds, budgets)."""
import argparse
import sys
import time
from os import path as osp

from srdistill.ablation.plan import BUDGETS, expand, load_plan, select_jobs
from srdistill.ablation.runner import AblationRunner
from srdistill.ablation.summary import write_summary
from srdistill.utils import process
from srdistill.utils.errors import UserError


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog='tools/ablate.py', description=__doc__,
        epilog='Example: python tools/ablate.py -opt options/ablation_291.yml --jobs 4. Rerun the same command to '
        'resume: finished jobs are skipped, interrupted ones resume from their last training state.')
    p.add_argument('-opt', required=True, help='ablation plan (YAML)')
    p.add_argument('--out', default=None, help='output folder (default: experiments/ablations/<name>)')
    p.add_argument('--jobs', type=int, default=1, help='jobs at a time (several fit on one GPU). Default: 1')
    p.add_argument('--only', nargs='+', default=None, metavar='RUN', help='only these runs (and what they need)')
    p.add_argument('--seeds', nargs='+', type=int, default=None, help='override the plan\'s seeds')
    p.add_argument('--budgets', nargs='+', default=None, help="override the plan's budgets (iterations, compute)")
    p.add_argument('--iterations', type=int, default=None, help="override the plan's iterations (e.g. a quick try)")
    p.add_argument('--device', default=None, help='evaluation device (default: cuda when present, else cpu)')
    p.add_argument('--stop-after', type=float, default=None, metavar='MIN',
                   help='start no new job after this many minutes (running ones finish); rerun to go on')
    p.add_argument('--carry-after', type=float, default=None, metavar='MIN',
                   help='for a sitting that ends: start no new job after this many minutes (or once a job was '
                   'stopped for it), stop each running one at '
                   'its last checkpoint before then (the next would come later at its pace so far) '
                   'and carry them as --carry does (rerun the command to go on)')
    p.add_argument('--dry-run', action='store_true', help='print the jobs (iterations, compute) and stop')
    p.add_argument('--carry', action='store_true',
                   help='pack every unfinished job for a later sitting on a fresh checkout (its latest training state '
                   'and scores so far, in <out>/resume and <out>/progress), name the files to commit, and stop')
    p.add_argument('--summary-only', action='store_true', help='only (re)write the table and plot from the results')
    args = p.parse_args(argv)
    for flag in ('--stop-after', '--carry-after'):
        minutes = getattr(args, flag[2:].replace('-', '_'))
        if minutes is not None and minutes < 0:
            p.error(f'{flag}: {minutes} minutes; give the minutes from now (0 or more).')
    return args


def print_carried(files):
    """Name the files that carry unfinished jobs to the next sitting (:meth:`AblationRunner.carry_over`)."""
    if files:
        size = sum(osp.getsize(f) for f in files) / 2**20
        listed = ' '.join(osp.relpath(f) for f in files)
        print(f'to carry these jobs to the next sitting, commit ({size:.1f} MB):\n  git add {listed}')
    else:
        print('nothing to carry: no unfinished job has a training state.')



def check_budgets(budgets, plan):
    """``--budgets``: known names, and for ``compute`` a plan that names its ``compute_reference``."""
    bad = [b for b in budgets if b not in BUDGETS]
    if bad:
        raise UserError(f'--budgets: {bad} unknown; use {list(BUDGETS)}.')
    if 'compute' in budgets and plan.get('compute_reference') not in plan['runs']:
        raise UserError(f'--budgets compute: {plan["path"]} names no run as `compute_reference`; add one (the run '
                        'whose multiply-adds every run of the compute budget is given).')


def main(argv=None):
    args = parse_args(argv)
    plan = load_plan(args.opt)
    if args.iterations is not None:
        plan['iterations'] = args.iterations
    if args.seeds is not None:  # a selection, like --only: the plan's other seeds stay in the summary
        plan['seeds'] = sorted(set(plan['seeds']) | set(args.seeds))
    if args.budgets is not None:
        check_budgets(args.budgets, plan)
        # every budget is expanded, so that a compute-budget job still finds the equal-iterations twin it copies
        plan['budgets'] = [b for b in BUDGETS if b in args.budgets or b in plan['budgets']]
    if args.iterations is not None:
        plan['val_freq'] = min(plan['val_freq'], args.iterations)
    out = args.out or osp.join('experiments', 'ablations', plan['name'])
    jobs = every_job = expand(plan)
    if args.only:
        unknown = [r for r in args.only if r not in plan['runs']]
        if unknown:
            raise UserError(f'--only: {unknown} are not runs of {args.opt} (runs: {list(plan["runs"])}).')
    if args.seeds is not None:
        jobs = [j for j in jobs if j['seed'] in args.seeds]
    jobs = select_jobs(jobs, runs=args.only, budgets=args.budgets)
    if args.dry_run:
        print(f'{"job":40s} {"iterations":>10s} {"GMAC/step":>10s} {"total PMAC":>10s}  needs')
        for j in jobs:
            print(f'{j["name"]:40s} {j["iterations"]:10d} {j["step_macs"] / 1e9:10.1f} {j["total_macs"] / 1e15:10.3f}  '
                  f'{"same training as " + j["same_as"] if j["same_as"] else ", ".join(j["deps"])}')
        return 0
    if args.carry:
        print_carried(AblationRunner(plan, jobs, out, device=args.device).carry_over())
        return 0
    failed = []
    if not args.summary_only:
        seconds = {key: None if getattr(args, key) is None else 60 * getattr(args, key)
                   for key in ('stop_after', 'carry_after')}
        runner = AblationRunner(plan, jobs, out, parallel=args.jobs, device=args.device, **seconds)
        with process.ending_children():  # kill <pid> / Ctrl-C end the training processes too
            failed = runner.run()
        if runner.stopped:
            print_carried(runner.carry_over())
    started = time.time()
    rows = write_summary(plan, out, jobs=every_job)
    if rows:
        print(open(osp.join(out, 'table.md')).read())
        outputs = ('table.md', 'table.csv', 'summary.json', 'ablation.png', 'differences.json', 'comparisons.json',
                   'curves.json', 'curves.png', 'family.json', 'family_control.json', 'family.png')
        written = [n for n in outputs if osp.isfile(osp.join(out, n)) and osp.getmtime(osp.join(out, n)) >= started - 1]
        print(f'written: {out}/{", ".join(written)}')
    if failed:
        print(f'{len(failed)} jobs failed or were skipped: {", ".join(failed)}. Rerun to retry them.', file=sys.stderr)
        return 1
    return 0
