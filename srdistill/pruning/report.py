"""The pruning experiment's report: PSNR against multiply-adds and against latency, for the pruned exits, the unpruned
ones and the INT8 version of each, from a finished ablation plan with pruned runs (``init_from.prune``).

For every network (the source run's exit and final output, each fine-tuned pruned run at its checkpoint chosen on the
plan's selection set):

- PSNR/SSIM on each set: the ablation runner's own evaluation (``results/<job>.json``, per image);
- the paired per-image difference against a reference run (the unpruned exit fine-tuned the same way) with a 95% t
  interval over images (:func:`~srdistill.ablation.stats.t_interval`);
- its INT8 ONNX (static QDQ, :func:`~srdistill.export.quantize.quantize_int8`) evaluated image by image on each set
  with ONNX Runtime;
- multiply-adds at 1280x720 (:func:`~srdistill.archs.cost.exit_macs`) and parameters;
- latency in each runtime, every (network, runtime) pair interleaved in one run
  (:func:`~srdistill.benchmark.runtimes.runtime_latencies`).
"""
import json
import os
from os import path as osp

import numpy as np

from srdistill.ablation.plan import expand, load_plan
from srdistill.ablation.stats import t_interval
from srdistill.archs.checkpoints import load_checkpoint
from srdistill.archs.cost import MAC_OUTPUT_SIZE, exit_macs
from srdistill.evaluation.exits import dataset_pairs
from srdistill.utils.errors import UserError

LATENCY_RUNTIMES = ('eager', 'onnxruntime', 'onnxruntime-int8', 'openvino', 'ncnn')


def _checkpoint(out_dir, job, result):
    """The checkpoint the result's ``best`` numbers come from (chosen on the selection set)."""
    models = osp.join(out_dir, 'experiments', job['name'], 'models')
    path = osp.join(models, f'net_g_{result["best_iter"]}.pth')
    return path if osp.isfile(path) else osp.join(models, 'net_g_latest.pth')


def collect(plan_path, out_dir):
    """The networks of a finished plan and their evaluation.

    Returns:
        list[dict]: One per network: ``label``, ``run``, ``output`` (``e<depth>``), ``net`` (standalone, eval),
        ``network`` (its options), ``ckpt``, ``psnr``/``ssim`` (``{set: mean}``) and ``per_image``
        (``{set: {image: PSNR}}``), ``prune`` (ratio or None), ``mode``.

    Raises:
        UserError: A job of the plan has no result yet (the plan is not finished).
    """
    plan = load_plan(plan_path)
    runs = plan['runs']
    entries = []
    for job in expand(plan):
        if not job['report']:
            continue
        path = osp.join(out_dir, 'results', f'{job["name"]}.json')
        if not osp.isfile(path):
            raise UserError(f'{path} does not exist: run `python tools/ablate.py -opt {plan_path} --out {out_dir}` '
                            'to the end first.')
        with open(path) as f:
            result = json.load(f)
        ckpt = _checkpoint(out_dir, job, result)
        multi, _ = load_checkpoint(ckpt)
        init = runs[job['run']].get('init_from') if isinstance(runs[job['run']].get('init_from'), dict) else {}
        outputs = [result['output']] if init.get('prune') is not None else list(result['best_all_outputs'][
            plan['evaluate']['select_on']])
        for output in outputs:
            depth = int(output[1:])
            net = multi.exit_network(depth)
            per_image = {s: {name: scores[output]['psnr'] for name, scores in images.items()}
                         for s, images in result['best_per_image'].items()}
            entries.append(dict(
                label=job['label'] if len(outputs) == 1 else f'{job["label"]}: {output}', run=job['run'],
                output=output, net=net, network=multi.exit_network_opt(depth), ckpt=ckpt,
                psnr={s: v[output]['psnr'] for s, v in result['best_all_outputs'].items()},
                ssim={s: v[output]['ssim'] for s, v in result['best_all_outputs'].items()},
                per_image=per_image, prune=init.get('prune'), mode=init.get('mode', 'uniform') if init else None,
                params=multi.exit_parameters(depth),
                macs=exit_macs(multi, depth)))
    return entries, plan


def onnx_scores(path, pairs, scale):
    """Per-image Y PSNR and SSIM of an ONNX model (ONNX Runtime, CPU) on ``pairs`` ((HR path, LR path))."""
    from srdistill.data.image_files import UINT8, read_image
    from srdistill.export.quantize import to_batch, to_image
    from srdistill.inference.runners import OnnxRunner
    from srdistill.metrics.psnr_ssim_y_metric import calculate_psnr_y, calculate_ssim_y
    runner = OnnxRunner(path)
    scores = {}
    for gt_path, lq_path in pairs:
        gt, lq = read_image(gt_path, UINT8), read_image(lq_path, UINT8)
        sr = to_image(runner(to_batch(lq)), lq.ndim == 2)
        gt = gt[:sr.shape[0], :sr.shape[1]]
        name = osp.splitext(osp.basename(lq_path))[0]
        scores[name] = (calculate_psnr_y(sr, gt, crop_border=scale), calculate_ssim_y(sr, gt, crop_border=scale))
    return scores


def paired(per_image_a, per_image_b):
    """Mean of A - B over the images both have, and its 95% t interval over images."""
    names = sorted(set(per_image_a) & set(per_image_b))
    diffs = [per_image_a[n] - per_image_b[n] for n in names]
    return dict(mean=float(np.mean(diffs)), ci_images=t_interval(diffs), images=len(diffs))


def build_report(plan_path, out_dir, reference='p0', lr_size=(180, 320), runtimes=LATENCY_RUNTIMES, repeats=5,
                 work_dir=None, log=print):
    """Everything :func:`markdown` and :func:`plot` draw (JSON-ready).

    Args:
        plan_path (str): The ablation plan (e.g. options/prune_cpu.yml).
        out_dir (str): Its ``--out`` folder, finished.
        reference (str): Run the differences are taken against (the unpruned exit, fine-tuned). Default: ``'p0'``.
        lr_size (tuple[int, int]): LR input (h, w) of the latency. Default: (180, 320), a 1280x720 x4 output.
        runtimes (tuple[str]): Runtimes timed (:data:`~srdistill.benchmark.runtimes.RUNTIMES`).
        repeats (int): Timed rounds. Default: 5.
        work_dir (str | None): Where the converted models are kept (the INT8 ONNX evaluated). Default: a temporary
            folder.
        log (callable): Progress messages.
    """
    import tempfile

    from srdistill.benchmark.runtimes import runtime_latencies
    entries, plan = collect(plan_path, out_dir)
    labels = [e['label'] for e in entries]
    if len(set(labels)) != len(labels):
        raise UserError(f'{plan_path}: two runs share a label; give each run its own `label`.')
    datasets = plan['evaluate']['datasets']
    ref = next((e for e in entries if e['run'] == reference), None)
    if ref is None:
        raise UserError(f'{plan_path}: no run {reference!r} to take the differences against (--reference).')
    scale = entries[0]['net'].upscale
    pairs = {name: dataset_pairs(name, plan['evaluate']['dataroot'], scale) for name in datasets}
    own_tmp = work_dir is None
    work_dir = work_dir or tempfile.mkdtemp(prefix='srdistill-prune-report-')
    os.makedirs(work_dir, exist_ok=True)
    log(f'latency: {len(entries)} networks x {len(runtimes)} runtimes, interleaved, {repeats} rounds, LR {lr_size}')
    latency = runtime_latencies({e['label']: e['net'] for e in entries}, lr_size, runtimes, repeats=repeats,
                                tmp_dir=work_dir)
    rows = []
    for i, entry in enumerate(entries):
        row = {k: entry[k] for k in ('label', 'run', 'output', 'network', 'ckpt', 'psnr', 'ssim', 'prune', 'mode',
                                     'params', 'macs')}
        row['latency'] = latency[entry['label']]
        row['diff_vs_reference'] = {s: paired(entry['per_image'][s], ref['per_image'][s]) for s in datasets}
        int8 = osp.join(work_dir, f'net{i}', 'int8.onnx')  # runtime_latencies' INT8 model of this network
        if osp.isfile(int8):
            log(f'INT8 evaluation: {entry["label"]}')
            scores = {s: onnx_scores(int8, pairs[s], scale) for s in datasets}
            row['int8'] = dict(psnr={s: float(np.mean([v[0] for v in scores[s].values()])) for s in datasets},
                               ssim={s: float(np.mean([v[1] for v in scores[s].values()])) for s in datasets},
                               per_image={s: {n: v[0] for n, v in scores[s].items()} for s in datasets})
            row['int8']['diff_vs_fp32'] = {s: paired(row['int8']['per_image'][s], entry['per_image'][s])
                                           for s in datasets}
        rows.append(row)
    if own_tmp:
        import shutil
        shutil.rmtree(work_dir, ignore_errors=True)
    return dict(plan=plan_path, out=out_dir, reference=reference, datasets=datasets, lr_size=list(lr_size),
                macs_output_size=list(MAC_OUTPUT_SIZE), runtimes=list(runtimes), repeats=repeats,
                select_on=plan['evaluate']['select_on'], rows=rows)
