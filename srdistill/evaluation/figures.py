"""Figures of an evaluation: quality against cost, and the same crop of test images side by side."""
import textwrap

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_tradeoff(rows, dataset, path):
    """PNG with two panels: PSNR on ``dataset`` against GMACs and against latency; a line per model, a point per exit.

    Bicubic is drawn as a dashed horizontal line. Without latencies (``--no-latency``) only the GMACs panel is drawn.
    A latency is the median of interleaved runs; where a row has its quartiles (``latency_q1_ms``,
    ``latency_q3_ms``), a horizontal error bar spans them, so that two points closer than their spread are not read as
    a difference.
    """
    panels = [('macs', 'GMACs')]
    if any(r.get('latency_ms') is not None for r in rows):
        panels.append(('latency_ms', 'latency (ms)'))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2), squeeze=False)
    axes = axes[0]
    models = [m for m in dict.fromkeys(r['model'] for r in rows) if m != 'bicubic']
    bicubic = next((r for r in rows if r['output'] == 'bicubic'), None)  # of the LR files, as the models
    for ax, (key, label) in zip(axes, panels):
        for model in models:
            points = sorted((r[key] / (1e9 if key == 'macs' else 1), r[f'{dataset}/psnr'], r['output'])
                            for r in rows if r['model'] == model and r.get(key) is not None)
            if not points:
                continue
            xs, ys, names = zip(*points)
            line, = ax.plot(xs, ys, marker='o', label=model)
            if key == 'latency_ms':
                spread = _latency_spread([r for r in rows if r['model'] == model], dataset)
                if spread:
                    medians, psnrs, below, above = spread
                    ax.errorbar(medians, psnrs, xerr=[below, above], fmt='none', ecolor=line.get_color(), capsize=3,
                                alpha=0.8)
            for x, y, name in points:
                ax.annotate(name, (x, y), textcoords='offset points', xytext=(4, -10), fontsize=8)
        if bicubic is not None:
            ax.axhline(bicubic[f'{dataset}/psnr'], color='gray', linestyle='--', label='bicubic')
        ax.set_xlabel(label)
        ax.set_ylabel(f'{dataset} PSNR (dB, Y)')
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f'Quality against cost, {dataset}')
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _latency_spread(rows, dataset):
    """``(x, y, below, above)``: the median latency, the PSNR on ``dataset`` and the distances down to the first and
    up to the third quartile, of the rows that have quartiles (sorted by latency); None when none has."""
    rows = sorted((r for r in rows if r.get('latency_ms') is not None and r.get('latency_q1_ms') is not None
                   and r.get('latency_q3_ms') is not None), key=lambda r: r['latency_ms'])
    if not rows:
        return None
    return ([r['latency_ms'] for r in rows], [r[f'{dataset}/psnr'] for r in rows],
            [r['latency_ms'] - r['latency_q1_ms'] for r in rows], [r['latency_q3_ms'] - r['latency_ms'] for r in rows])


def interesting_crop(hr, size):
    """Top-left (y, x) of the ``size`` x ``size`` HR window with the most detail (largest gradient energy)."""
    gray = hr.astype(np.float64).mean(axis=2) if hr.ndim == 3 else hr.astype(np.float64)
    energy = np.abs(np.diff(gray, axis=0))[:, :-1] + np.abs(np.diff(gray, axis=1))[:-1]
    integral = np.pad(energy, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    h, w = energy.shape
    size = min(size, h, w)
    sums = (integral[size:, size:] - integral[:-size, size:] - integral[size:, :-size] + integral[:-size, :-size])
    y, x = np.unravel_index(np.argmax(sums[::4, ::4]), sums[::4, ::4].shape)
    return int(y * 4), int(x * 4), size


def comparison_picture(panels, path, crop=96):
    """PNG: for each test image a row of the same crop from each output and the HR, with its PSNR underneath.

    Args:
        panels (list[tuple[str, np.ndarray, list[tuple[str, np.ndarray, float | None]]]]): per test image: its name,
            its HR (uint8 BGR or gray) and the columns ``(title, image, psnr)`` (images the size of the HR crop's
            source, i.e. the SR images).
        path (str): Output file.
        crop (int): Crop size in HR pixels. Default: 96.
    """
    cols = max(len(columns) for _, _, columns in panels) + 1
    fig, axes = plt.subplots(len(panels), cols, figsize=(2.1 * cols, 2.4 * len(panels)), squeeze=False)
    for row, (name, hr, columns) in enumerate(panels):
        y, x, size = interesting_crop(hr, crop)
        for col, (title, img, psnr) in enumerate(columns + [('HR', hr, None)]):
            patch = img[y:y + size, x:x + size]
            ax = axes[row][col]
            ax.imshow(patch[..., ::-1] if patch.ndim == 3 else patch, cmap=None if patch.ndim == 3 else 'gray',
                      vmin=0, vmax=255, interpolation='nearest')
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(textwrap.fill(title, 22) if row == 0 else '', fontsize=8)
            ax.set_xlabel(f'{psnr:.2f} dB' if psnr is not None else name, fontsize=8)
        for col in range(len(columns) + 1, cols):
            axes[row][col].axis('off')
    fig.suptitle('Same crop, each output (PSNR of the whole image, Y)', fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
