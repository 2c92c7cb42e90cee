"""Run the jobs of an ablation plan: train each (resuming an interrupted one), evaluate its checkpoints, skip done jobs.

Layout under the output folder ``<out>``::

    options/<job>.yml       the complete training options of each job
    logs/<job>.log          its training output
    experiments/<job>/      BasicSR's experiment folder (models/, training_states/, train log)
    tb_logger/<job>/        tensorboard curves
    results/<job>.json      its evaluation: last and best checkpoint (means and per-image values), the validation curve

A job is done when its ``results/<job>.json`` exists; a job with training states but no result resumes from its
latest state (BasicSR's ``--auto_resume``), also in a later sitting on a fresh checkout through the state that
:meth:`AblationRunner.carry_over` packs into ``resume/<job>/`` with the scores so far in ``progress/<job>.json``
(:mod:`srdistill.ablation.carry`). Jobs run ``jobs`` at a time (several fit on one GPU), each after the jobs
it depends on (``init_from`` / ``teacher_from``).
"""
import json
import os
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from os import path as osp

import torch

from srdistill.ablation import carry
from srdistill.ablation.inherit import write_cut, write_pruned
from srdistill.ablation.plan import training_options, write_options
from srdistill.archs.checkpoints import load_checkpoint
from srdistill.evaluation.exits import dataset_pairs, default_device, evaluate
from srdistill.utils import process
from srdistill.utils.errors import UserError
from srdistill.utils.job_lock import job_lock


class TrainingStopped(Exception):
    """Training was stopped at a checkpoint by the caller's ``on_checkpoint`` (e.g. a pruned tuning trial)."""

    def __init__(self, job, iteration):
        super().__init__(f'{job}: training stopped at iteration {iteration}')
        self.job, self.iteration = job, iteration


# the training subprocess; it ends when the runner is gone, even killed (srdistill.utils.process)
_TRAIN = ('import sys; from srdistill.utils.process import exit_with_parent; exit_with_parent(int(sys.argv[3])); '
          'from srdistill.train import main; root = sys.argv[1]; '
          'sys.argv = ["train.py", "-opt", sys.argv[2], "--auto_resume"]; main(root)')


class AblationRunner:
    """Train and evaluate the jobs of :func:`srdistill.ablation.plan.expand`.

    Args:
        plan (dict): From :func:`~srdistill.ablation.plan.load_plan`.
        jobs (list[dict]): From :func:`~srdistill.ablation.plan.expand`.
        out_dir (str): Output folder.
        parallel (int): Jobs at a time. Default: 1.
        device (str | None): Evaluation device. Default: CUDA when present.
        log (callable): Progress messages. Default: print.
    """

    poll_s = 10  # seconds between looks for a new checkpoint while training (``on_checkpoint`` of :meth:`run_job`)
    state_wait_s = 300  # at most this long, after a checkpoint's weights, for its training state (carry_after)

    def __init__(self, plan, jobs, out_dir, parallel=1, device=None, log=print, stop_after=None, carry_after=None):
        self.plan, self.jobs, self.out = plan, jobs, osp.abspath(out_dir)
        self.parallel = max(1, parallel)
        self.device = torch.device(device) if device else default_device()
        self.log = log
        self.by_name = {j['name']: j for j in jobs}
        now = time.time()
        limits = [now + s for s in (stop_after, carry_after) if s is not None]
        self.deadline = min(limits) if limits else None  # no new job after it
        self.carry_deadline = None if carry_after is None else now + carry_after  # running jobs stop by it
        self.stopped = []  # jobs stopped for carry_after at a checkpoint, for carry_over
        self._locks = {j['name']: threading.Lock() for j in jobs}
        self.env = dict(os.environ)
        if parallel > 1 and 'OMP_NUM_THREADS' not in self.env:  # jobs side by side share the CPU cores
            self.env['OMP_NUM_THREADS'] = str(max(1, (os.cpu_count() or 2) // parallel))

    # paths
    def experiment_dir(self, job):
        return osp.join(self.out, 'experiments', job['name'])

    def latest_checkpoint(self, job):
        return osp.join(self.experiment_dir(job), 'models', 'net_g_latest.pth')

    def lock_path(self, job):
        return osp.join(self.out, 'experiments', f'{job["name"]}.lock')

    def result_path(self, job):
        return osp.join(self.out, 'results', f'{job["name"]}.json')

    def is_done(self, job):
        return osp.isfile(self.result_path(job))

    # work
    def run(self):
        """Run every job not done yet. Returns the list of failed job names (their dependants are skipped)."""
        pending = [j for j in self.jobs if not self.is_done(j)]
        self.log(f'ablation {self.plan["name"]}: {len(self.jobs) - len(pending)} of {len(self.jobs)} jobs done, '
                 f'{len(pending)} to run, {self.parallel} at a time; output in {self.out}')
        failed, running = [], {}
        with ThreadPoolExecutor(self.parallel) as pool:
            while pending or running:
                # no new job once the time is up, nor once a job was stopped for --carry-after: that job stopped
                # because its next checkpoint would come too late, so a new job's first one would come later still
                if pending and (self.stopped or (self.deadline is not None and time.time() > self.deadline)):
                    self.log(f'time is up (--stop-after or --carry-after): {len(pending)} jobs not started, left '
                             'for the next run of this command')
                    pending = []
                # a job whose sources are done goes first, so that a source's weights are used while they are here
                for job in sorted(pending, key=lambda j: not j['deps']):
                    if len(running) >= self.parallel:
                        break
                    deps = job['deps']
                    if any(d in failed for d in deps):
                        pending.remove(job)
                        failed.append(job['name'])
                        self.log(f'skip {job["name"]}: a job it needs failed')
                    elif all(self.is_done(self.by_name[d]) for d in deps):
                        pending.remove(job)
                        running[pool.submit(self.run_job, job, self._carry_hook(job))] = job
                if not running:
                    break
                finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for future in finished:
                    job = running.pop(future)
                    try:
                        future.result()
                    except TrainingStopped as stop:
                        self.stopped.append(job['name'])
                        self.log(f'{job["name"]}: stopped at iteration {stop.iteration} for --carry-after')
                    except (RuntimeError, UserError) as err:
                        failed.append(job['name'])
                        self.log(f'FAILED {job["name"]}: {err}')
        return failed

    def _carry_hook(self, job):
        """The ``on_checkpoint`` of a job under ``carry_after`` (None without it): stop at the last checkpoint that
        comes before that time (the next one, as long after it as it came after the one before, would come later),
        or at the first one past it; once the checkpoint's training state is written too, so that
        :meth:`carry_over` packs that iteration. A slow job (64 channels: 20 minutes between checkpoints) is then
        carried by the time asked, not up to a checkpoint interval after it. The hook is made as the job starts, and a
        job starts or resumes at a checkpoint (states are saved there only), so its first checkpoint's pace is the
        time since then: a little more than the interval (the start-up), so it errs early."""
        if self.carry_deadline is None:
            return None
        states = osp.join(self.experiment_dir(job), 'training_states')
        last = [time.time()]  # the job's start, then the latest checkpoint's time

        def stop_here(iteration, path):
            now = time.time()
            pace, last[0] = now - last[0], now
            if now + pace <= self.carry_deadline:
                return False
            waited = 0.0
            while not osp.isfile(osp.join(states, f'{iteration}.state')) and waited < self.state_wait_s:
                time.sleep(0.5)  # BasicSR saves the weights, then the state (each written atomically)
                waited += 0.5
            return True
        return stop_here

    def run_job(self, job, on_checkpoint=None):
        """Train (or resume) and evaluate one job, writing ``results/<job>.json``.

        ``on_checkpoint(iteration, path)`` (optional) is called with each periodic checkpoint while training runs; when
        it returns True, training is stopped and :class:`TrainingStopped` is raised (no result is written).
        """
        start = time.time()
        with job_lock(self.lock_path(job), job['name']):  # one runner per job, also across runners on one folder
            if self.is_done(job):  # another runner finished it meanwhile
                return
            if job['same_as']:
                with open(self.result_path(self.by_name[job['same_as']])) as f:
                    result = json.load(f)
                result.update(name=job['name'], budget=job['budget'], same_as=job['same_as'])
            else:
                if not osp.isfile(self.latest_checkpoint(job)):
                    carried = carry.unpack(self.out, job, self.experiment_dir(job))
                    if carried is not None:
                        self.log(f'{job["name"]}: resuming from the state carried at iteration {carried} '
                                 f'({carry.resume_dir(self.out, job)})')
                    self.train(job, on_checkpoint)
                result = self.evaluate(job)
            result['wall_s'] = round(time.time() - start, 1)
            os.makedirs(osp.dirname(self.result_path(job)), exist_ok=True)
            tmp = self.result_path(job) + '.part'
            with open(tmp, 'w') as f:
                json.dump(result, f, indent=1)
            os.replace(tmp, self.result_path(job))
            carry.clear(self.out, job)  # the result holds the curve; a carried state is no longer needed
        student = result['last'][self.plan['evaluate']['select_on']]
        self.log(f'done {job["name"]}: {result["output"]} {self.plan["evaluate"]["select_on"]} last '
                 f'{student["psnr"]:.2f} dB ({result["wall_s"]:.0f} s)')

    def _sources(self, job):
        paths = {}
        for dep in job['deps']:
            source = self.by_name[dep]
            with self._locks[dep]:
                if not source['same_as'] and not osp.isfile(self.latest_checkpoint(source)):
                    self.log(f'{dep}: its weights are gone (result kept); training it again for {job["name"]}')
                    self.train(source)
            paths[dep] = {'latest': self.latest_checkpoint(source), 'network_g': source['opt']['network_g']}
        if job['init_from']:
            source, depth, ratio = paths[job['init_from']]['latest'], job['init_depth'], job.get('init_prune')
            pruned = f'_p{round(100 * ratio)}' if ratio is not None else ''
            init = osp.join(self.out, 'options', f'{job["name"]}_init_e{depth}{pruned}.pth')
            os.makedirs(osp.dirname(init), exist_ok=True)
            if ratio is None:
                paths[job['init_from']]['inherit'] = write_cut(source, depth, init)
            else:
                paths[job['init_from']]['inherit'], network = write_pruned(source, depth, ratio, job['init_round_to'],
                                                                           init, job['init_mode'])
                # a global pruning's widths depend on the trained weights: the plan only knew its multiply-adds
                job['opt']['network_g'] = network
        return paths

    def train(self, job, on_checkpoint=None):
        if carry.latest_state(self.experiment_dir(job)) is None:  # from iteration 0: earlier scores are not its own
            carry.clear(self.out, job)
        opt = training_options(self.plan, job, self._sources(job))
        opt_path = osp.join(self.out, 'options', f'{job["name"]}.yml')
        write_options(opt, opt_path)
        log_path = osp.join(self.out, 'logs', f'{job["name"]}.log')
        os.makedirs(osp.dirname(log_path), exist_ok=True)
        self.log(f'train {job["name"]}: {job["iterations"]} iterations')
        with open(log_path, 'a') as log:
            proc = process.popen([sys.executable, '-c', _TRAIN, self.out, opt_path, str(os.getpid())], stdout=log,
                                 stderr=subprocess.STDOUT, cwd=os.getcwd(), env=self.env)
            try:
                stopped = self._watch(job, proc, on_checkpoint) if on_checkpoint else None
                if stopped is None:
                    proc.wait()
            finally:  # an error in the caller's hook (or Ctrl-C) does not leave the training running
                process.end([proc])
        if stopped is not None:
            note = f'training stopped at iteration {stopped} by the caller (a pruned trial, or --carry-after)'
            with open(log_path, 'a') as log:
                log.write(f'\n[srdistill] {note}\n')
            self.log(f'{job["name"]}: {note}')
            raise TrainingStopped(job['name'], stopped)
        if proc.returncode != 0 or not osp.isfile(self.latest_checkpoint(job)):
            with open(log_path) as f:
                tail = ''.join(f.readlines()[-5:]).strip()
            raise RuntimeError(f'training exited with status {proc.returncode}; see {log_path}:\n{tail}')

    def _watch(self, job, proc, on_checkpoint):
        """Call ``on_checkpoint`` with each new periodic checkpoint while ``proc`` trains (checkpoints are written
        atomically: one that exists is complete). Returns the iteration it stopped at, or None when training ended."""
        seen = set()
        while True:
            finished = proc.poll() is not None
            for it, path in self.checkpoints(job, final=False):
                if it in seen:
                    continue
                seen.add(it)
                if not finished and it < job['iterations'] and on_checkpoint(it, path):
                    return it
            if finished:
                return None
            time.sleep(self.poll_s)

    def checkpoints(self, job, final=True):
        """``[(iteration, path)]`` of a job's checkpoints on disk: the periodic ones and (``final``) the last one."""
        models = osp.join(self.experiment_dir(job), 'models')
        found = {}
        for name in os.listdir(models) if osp.isdir(models) else []:
            m = re.fullmatch(r'net_g_(\d+)\.pth', name)
            if m:
                found[int(m.group(1))] = osp.join(models, name)
        if final:
            found[job['iterations']] = self.latest_checkpoint(job)
        return sorted(found.items())

    def selection_curve(self, progress):
        """``(output, curve, best iteration)`` from the selection-set scores (:func:`carry.student_curve`)."""
        student, curve = carry.student_curve(progress, self.plan['student'])
        return student, curve, max(curve, key=lambda c: c[1])[0]

    def score_selection(self, job, checkpoints):
        """Scores on the selection set of every checkpoint, from ``progress/<job>.json`` or evaluated now (and kept)."""
        ev, scale = self.plan['evaluate'], job['opt']['scale']
        progress = carry.read_progress(self.out, job)
        new = [it for it in sorted(checkpoints) if it not in progress]
        if new:
            pairs = dataset_pairs(ev['select_on'], ev['dataroot'], scale)
            for it in new:
                net, _ = load_checkpoint(checkpoints[it], scale=scale, device=self.device)
                means, per_image = evaluate(net, pairs, scale, device=self.device, bicubic=False)
                progress[it] = {'means': {k: dict(v) for k, v in means.items()},
                                'per_image': [[image, {k: dict(v) for k, v in outputs.items()}]
                                              for image, outputs in per_image]}
                carry.write_progress(self.out, job, progress, ev['select_on'])
        return progress

    def evaluate(self, job):
        """Evaluate every checkpoint on the selection set, then the last and the best one on every set."""
        ev, scale = self.plan['evaluate'], job['opt']['scale']
        pairs = {name: dataset_pairs(name, ev['dataroot'], scale) for name in ev['datasets']}
        checkpoints = dict(self.checkpoints(job))
        progress = self.score_selection(job, checkpoints)
        scores = {(it, ev['select_on']): p['means'] for it, p in progress.items()}
        per_image = {(it, ev['select_on']): p['per_image'] for it, p in progress.items()}

        def score(it, name):
            if (it, name) not in scores:
                if it not in checkpoints:
                    raise RuntimeError(f'{job["name"]}: the weights of iteration {it} are gone; its carried state '
                                       f'({carry.resume_dir(self.out, job)}) should hold them.')
                net, _ = load_checkpoint(checkpoints[it], scale=scale, device=self.device)
                scores[it, name], per_image[it, name] = evaluate(net, pairs[name], scale, device=self.device,
                                                                 bicubic=False)
            return scores[it, name]

        student, curve, best_iter = self.selection_curve(progress)
        result = {k: job[k] for k in ('name', 'run', 'label', 'seed', 'budget', 'iterations', 'step_macs', 'own_macs',
                                      'total_macs', 'report')}
        result.update(student=self.plan['student'], output=student, curve=curve, best_iter=best_iter,
                      selected_on=ev['select_on'])
        for key, it in (('last', job['iterations']), ('best', best_iter)):
            result[key] = {name: dict(score(it, name)[student]) for name in pairs}
            result[f'{key}_all_outputs'] = {name: {k: dict(v) for k, v in score(it, name).items()} for name in pairs}
            # the raw values behind the means: paired per-image differences between runs come from these
            result[f'{key}_per_image'] = {name: {image: {k: dict(v) for k, v in outputs.items()}
                                                 for image, outputs in per_image[it, name]} for name in pairs}
        return result

    def carry_over(self):
        """Pack every unfinished job that has a training state for the next sitting (:mod:`.carry`).

        Returns:
            list[str]: The files to commit: each job's ``progress/<job>.json`` and ``resume/<job>/`` files.
        """
        files = []
        for job in self.jobs:
            if self.is_done(job) or job['same_as']:
                continue
            exp = self.experiment_dir(job)
            state = carry.latest_state(exp)
            if state is None:
                continue
            # weights newer than the state (a process stopped between the two saves) are retrained on resuming:
            # scoring them now would keep the stopped run's score for the resumed run's checkpoint
            checkpoints = {it: path for it, path in self.checkpoints(job, final=False) if it <= state[0]}
            progress = self.score_selection(job, checkpoints)
            best = self.selection_curve(progress)[2] if progress else None
            packed = carry.pack(self.out, job, exp, best if best in checkpoints else None)
            self.log(f'carry {job["name"]}: state of iteration {state[0]}, '
                     f'{len(progress)} checkpoints scored, best so far {best}')
            files += [carry.progress_path(self.out, job)] + packed
        return files
