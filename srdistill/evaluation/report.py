"""The per-exit benchmark table: markdown for reading, CSV and JSON for tools, with the protocol stated."""
import csv
import json
import os
from os import path as osp

PROTOCOL = ('Y channel of ITU-R BT.601 as MATLAB rgb2ycbcr computes it on the 8-bit image (rounded; a grayscale image '
            'is its own Y), `scale` pixels cropped from each border, SR output rounded to 8 bits, HR cropped '
            'top-left to LR size x scale, mean over images; SSIM of Wang et al. (11x11 Gaussian, sigma 1.5); bicubic = '
            'MATLAB imresize of the LR image; bicubic_srcnn = SRCNN\'s Y-only float resize of the HR (the bicubic '
            'numbers papers quote). MACs: multiply-accumulates of the convolutions for a {out_w}x{out_h} '
            'output. Latency: PyTorch eager on {device}, one {lr_w}x{lr_h} LR image, each exit as its standalone '
            'network (blocks 1..k and its tail); each distinct network (same options and weights) timed once, all of '
            'them interleaved: {warmup} warm-up runs each, then {repeats} rounds that run every network once, in '
            'reverse order every other round; median of the rounds, interquartile range in latency_q1_ms and '
            'latency_q3_ms (the error bars of tradeoff.png).')


def _fmt(value, digits):
    return '-' if value is None else f'{value:.{digits}f}'


def _latency(row):
    """``median (q1-q3)`` in ms, or the median alone (rows written before the quartiles), or ``-``."""
    if row.get('latency_ms') is None or row.get('latency_q1_ms') is None:
        return _fmt(row.get('latency_ms'), 1)
    return f"{row['latency_ms']:.1f} ({row['latency_q1_ms']:.1f}-{row['latency_q3_ms']:.1f})"


def markdown(rows, datasets, metrics=('psnr', 'ssim')):
    """Markdown table: one row per model output (and bicubic), PSNR/SSIM per dataset, params, GMACs, latency (median
    and, in brackets, its interquartile range)."""
    extra = [m for m in metrics if m not in ('psnr', 'ssim')]
    head = ['model', 'output', 'params (K)', 'GMACs', 'latency (ms)']
    head += [f'{d} PSNR / SSIM' for d in datasets] + [f'{d} {m}' for d in datasets for m in extra]
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for row in rows:
        cells = [row['model'], row['output'], _fmt(row['params'] and row['params'] / 1e3, 1),
                 _fmt(row['macs'] and row['macs'] / 1e9, 2), _latency(row)]
        cells += [f"{_fmt(row.get(f'{d}/psnr'), 2)} / {_fmt(row.get(f'{d}/ssim'), 4)}" for d in datasets]
        cells += [_fmt(row.get(f'{d}/{m}'), 4) for d in datasets for m in extra]
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def write_reports(rows, datasets, out_dir, protocol, per_image=None, metrics=('psnr', 'ssim')):
    """Write ``table.md``, ``table.csv`` and ``results.json`` into ``out_dir``. Returns their paths.

    Args:
        rows (list[dict]): One per output: ``model``, ``output``, ``depth``, ``params``, ``macs``, ``latency_ms``
            (median), ``latency_q1_ms``, ``latency_q3_ms`` and ``<dataset>/<metric>``.
        datasets (list[str]): Dataset names, in column order.
        out_dir (str): Output folder (created).
        protocol (str): The evaluation protocol, stated in every file.
        per_image (dict | None): ``{model: {dataset: [(image, {output: {metric: value}})]}}`` for the JSON.
        metrics (tuple[str]): Metric names present.
    """
    os.makedirs(out_dir, exist_ok=True)
    paths = {k: osp.join(out_dir, n) for k, n in (('md', 'table.md'), ('csv', 'table.csv'), ('json', 'results.json'))}
    with open(paths['md'], 'w') as f:
        f.write(markdown(rows, datasets, metrics) + f'\n\nProtocol: {protocol}\n')
    columns = ['model', 'output', 'depth', 'params', 'macs', 'latency_ms', 'latency_q1_ms', 'latency_q3_ms']
    columns += [f'{d}/{m}' for d in datasets for m in metrics]
    with open(paths['csv'], 'w', newline='') as f:
        f.write(f'# {protocol}\n')
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction='ignore')
        writer.writeheader()
        writer.writerows(rows)
    with open(paths['json'], 'w') as f:
        json.dump({'protocol': protocol, 'datasets': list(datasets), 'rows': rows, 'per_image': per_image or {}}, f,
                  indent=1)
    return paths
