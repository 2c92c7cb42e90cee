"""Latency of standalone networks in the runtimes SR users run them in, all timed interleaved in one run.

Runtimes (:data:`RUNTIMES`): PyTorch eager (default memory layout) and channels_last, ONNX Runtime fp32 and static
INT8, OpenVINO and ncnn. Each network is converted once per runtime into a temporary folder by the exporter's own
writers, each verified against the PyTorch output within the exporter's tolerance as an export is (ONNX:
:func:`~srdistill.export.formats.write_onnx`; INT8: :func:`~srdistill.export.quantize.quantize_int8`, calibrated on
the exporter's bundled photos; OpenVINO IR, ncnn: :mod:`~srdistill.export.openvino_format`,
:mod:`~srdistill.export.ncnn_format`), then loaded by the runners ``tools/infer.py`` uses
(:mod:`srdistill.inference.runners`), so a time is what a user's inference gets: float32 numpy in, clipped numpy
out (a copy and a clip, well under 1% of a forward pass at the benchmark's sizes).

Timing (:func:`~srdistill.benchmark.measure.interleaved_ms`): after the warm-up of every (network, runtime) pair,
each round runs every pair once, in reverse order every other round, so a slow spell of a shared machine hits every
pair alike and shows as spread, not as a difference between two rows.

Threads: each runtime keeps its own default (PyTorch: ``torch.get_num_threads()``; ONNX Runtime: one intra-op thread
per physical core; OpenVINO's CPU plugin: its latency hint; ncnn: its physical big cores), recorded per entry in
``threads``. The question is what each runtime gives a user out of the box; one thread for all would measure a
machine nobody runs on. Interleaving, not a common thread count, is what keeps the rows comparable here.
"""
import copy
import hashlib
import json
import os
import tempfile
from functools import partial
from os import path as osp

import torch

from srdistill.archs.cost import input_channels
from srdistill.benchmark.measure import interleaved_ms, spread
from srdistill.inference.optional import require
from srdistill.utils.errors import UserError

RUNTIMES = ('eager', 'channels_last', 'onnxruntime', 'onnxruntime-int8', 'openvino', 'ncnn')
# the optional packages a runtime needs (srdistill/inference/optional.py names their pip packages)
OPTIONAL = {'openvino': ('openvino', ), 'ncnn': ('ncnn', 'pnnx')}


def network_key(net, opt=None):
    """A digest that two networks share exactly when they compute the same function the same way: the same class,
    options (``opt``, e.g. the architecture's ``exit_network_opt``) and parameter and buffer values, by name.

    Values are included, not only shapes: a CPU's speed can depend on them (denormal numbers run slowly), and two
    networks of one architecture with other weights are two measurements.
    """
    digest = hashlib.sha256(f'{type(net).__module__}.{type(net).__qualname__}'.encode())
    digest.update(json.dumps(opt, sort_keys=True, default=str).encode())
    for name, value in sorted(net.state_dict().items()):
        digest.update(f'{name}:{value.dtype}:{tuple(value.shape)}'.encode())
        digest.update(value.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def unavailable(runtime):
    """Why ``runtime`` cannot run here (the missing package's install line), or None when it can."""
    for module in OPTIONAL.get(runtime, ()):
        try:
            require(module, f'the {runtime} latency')
        except UserError as err:
            return str(err)
    return None


class _Job:
    """One network's conversions, in ``folder``: the PyTorch reference output and the fp32 ONNX file are made once
    and shared by the runtimes that need them."""

    def __init__(self, net, x, folder, device, calib):
        self.net, self.x, self.folder, self.device, self.calib = net, x, folder, device, calib
        self.scale = getattr(net, 'upscale', None)
        self._reference = self._onnx = None

    @property
    def reference(self):
        if self._reference is None:
            with torch.no_grad():
                self._reference = self.net(self.x).numpy()
        return self._reference

    def checked(self, name, write, fmt, pair=False):
        """Write ``name`` in ``folder`` with ``write`` (a writer of :mod:`srdistill.export`), verified within the
        exporter's tolerance for ``fmt``; returns its path (and its companion's, for a two-file format)."""
        from srdistill.export.exporter import TOLERANCE
        from srdistill.export.formats import SUFFIXES, companion_path, write_checked
        path = osp.join(self.folder, name + SUFFIXES[fmt])
        companions = [companion_path(path, fmt)] if pair else []
        write_checked(path, partial(write, net=self.net, check=self.x, reference=self.reference), TOLERANCE[fmt],
                      **({'companions': companions} if pair else {}))
        return (path, *companions)

    @property
    def onnx(self):
        if self._onnx is None:
            from srdistill.export.formats import write_onnx
            self._onnx = self.checked('fp32', write_onnx, 'onnx')[0]
        return self._onnx


def _torch_runner(job, channels_last):
    from srdistill.inference.runners import TorchRunner

    # a copy each: TorchRunner converts the network's memory format in place
    runner = TorchRunner(copy.deepcopy(job.net), job.scale, job.device, channels_last=channels_last)
    return runner, f'PyTorch on {runner.device}, {torch.get_num_threads()} intra-op threads'


def _ort_description(runner):
    threads = runner.session.get_session_options().intra_op_num_threads
    return (f"ONNX Runtime {runner.session.get_providers()[0]}, intra-op threads "
            f"{threads or 'default (one per physical core)'}")


def _onnxruntime(job):
    from srdistill.inference.runners import OnnxRunner
    runner = OnnxRunner(job.onnx)
    return runner, _ort_description(runner)


def _onnxruntime_int8(job):
    from srdistill.export.quantize import CALIB_PHOTOS, bundled_pairs, quantize_int8
    from srdistill.inference.runners import OnnxRunner
    calib = job.calib or [lq for _, lq in bundled_pairs(job.scale or 4, CALIB_PHOTOS)]
    runner = OnnxRunner(quantize_int8(job.onnx, osp.join(job.folder, 'int8.onnx'), calib))
    return runner, _ort_description(runner) + ', static QDQ INT8'


def _openvino(job):
    from srdistill.export.openvino_format import write_openvino
    from srdistill.inference.openvino_runner import OpenVinoRunner
    path, _ = job.checked('openvino', partial(write_openvino, radius=None, network={'upscale': job.scale}), 'openvino',
                          pair=True)
    runner = OpenVinoRunner(path)
    prop = runner.compiled.get_property
    precision = prop('INFERENCE_PRECISION_HINT')
    return runner, (f"OpenVINO CPU, {prop('INFERENCE_NUM_THREADS') or 'default'} threads, hint "
                    f"{str(prop('PERFORMANCE_HINT')).rsplit('.', 1)[-1]}, {prop('NUM_STREAMS')} stream(s), "
                    f"{getattr(precision, 'get_type_name', lambda: precision)()} inference")


def _ncnn(job):
    from srdistill.export.ncnn_format import write_ncnn
    from srdistill.inference.ncnn_runner import NcnnRunner
    path, weights = job.checked('ncnn', write_ncnn, 'ncnn', pair=True)
    runner = NcnnRunner(path, weights)
    return runner, f'ncnn CPU, {runner.net.opt.num_threads} threads, fp32'


# runtime -> builder(job) -> (runner: float32 numpy batch -> SR batch, thread settings in words)
BUILDERS = {'eager': partial(_torch_runner, channels_last=False),
            'channels_last': partial(_torch_runner, channels_last=True),
            'onnxruntime': _onnxruntime, 'onnxruntime-int8': _onnxruntime_int8, 'openvino': _openvino, 'ncnn': _ncnn}


def runtime_latencies(networks, lr_size, runtimes=RUNTIMES, warmup=2, repeats=5, calib=None, tmp_dir=None,
                      device='cpu'):
    """Latency of each network in each runtime, every (network, runtime) pair timed interleaved with the others.

    Args:
        networks (dict[str, nn.Module]): Label -> standalone network in eval mode (``forward(x)`` -> SR image), e.g. a
            multi-exit network's ``exit_network(8)`` or a BasicSR ``MSRResNet``.
        lr_size (tuple[int, int]): (h, w) of the LR input (one random image, batch 1).
        runtimes (tuple[str]): A subset of :data:`RUNTIMES`, in the order of the result. A runtime whose optional
            package is missing, or whose conversion fails (the converter's message), is recorded as skipped.
        warmup (int): Untimed runs of each pair before the first round. Default: 2.
        repeats (int): Timed rounds (one run of each pair each). Default: 5.
        calib (list[np.ndarray] | None): uint8 LR images for the INT8 calibration. Default: the exporter's bundled
            photos (:data:`srdistill.export.quantize.CALIB_PHOTOS`).
        tmp_dir (str | None): Folder for the converted files (kept there). Default: a temporary folder, removed.
        device (str | torch.device): Where the PyTorch runtimes run; every other runtime runs on the CPU. Default:
            ``'cpu'``.

    Returns:
        dict: ``{label: {runtime: {'median_ms', 'min_ms', 'max_ms', 'q1_ms', 'q3_ms', 'n', 'threads'} or
        {'skipped': reason}}}``.
    """
    unknown = [r for r in runtimes if r not in BUILDERS]
    if unknown:
        raise UserError(f'unknown runtime(s) {unknown}; choose among {list(RUNTIMES)}.')
    if not networks:
        return {}
    if tmp_dir is None:
        with tempfile.TemporaryDirectory(prefix='srdistill-runtimes-') as folder:
            return _measure(networks, lr_size, runtimes, warmup, repeats, calib, folder, device)
    return _measure(networks, lr_size, runtimes, warmup, repeats, calib, tmp_dir, device)


def _measure(networks, lr_size, runtimes, warmup, repeats, calib, folder, device):
    result = {label: {} for label in networks}
    pairs = []  # (label, runtime, runner, threads), in the order of the first round
    missing = {runtime: unavailable(runtime) for runtime in runtimes}
    generator = torch.Generator().manual_seed(0)
    for i, (label, net) in enumerate(networks.items()):
        x = torch.rand(1, input_channels(net), *lr_size, generator=generator)
        sub = osp.join(folder, f'net{i}')
        job = _Job(net.eval(), x, sub, device, calib)
        for runtime in runtimes:
            if missing[runtime]:
                result[label][runtime] = {'skipped': missing[runtime]}
                continue
            os.makedirs(sub, exist_ok=True)
            try:
                runner, threads = BUILDERS[runtime](job)
            except UserError as err:  # a converter that cannot handle this network: said, the others still timed
                result[label][runtime] = {'skipped': str(err)}
                continue
            result[label][runtime] = None  # keeps the runtimes' order; filled below
            pairs.append((label, runtime, partial(runner, x.numpy()), threads))
    times = interleaved_ms([run for _, _, run, _ in pairs], warmup, repeats, device)
    for (label, runtime, _, threads), ms in zip(pairs, times):
        result[label][runtime] = dict(spread(ms), threads=threads)
    return result
