"""Per-runtime latency (srdistill/benchmark/runtimes.py): the interleaved order, the spread, skipped runtimes, the
network identity that evaluate times once, and every runtime for real on a tiny BasicSR MSRResNet."""
import copy
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from basicsr.archs.srresnet_arch import MSRResNet
from conftest import require_module

from srdistill.benchmark import measure, runtimes
from srdistill.benchmark.measure import interleaved_ms, spread
from srdistill.benchmark.runtimes import RUNTIMES, network_key, runtime_latencies
from srdistill.utils.errors import UserError


def _tiny(num_block=1, seed=0):
    torch.manual_seed(seed)
    return MSRResNet(num_feat=8, num_block=num_block, upscale=4).eval()


class _Clock:
    """A fake ``time.perf_counter`` that only the fake runners move, by a known amount each."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self):
        return self.now


def test_interleaved_rounds_alternate_their_order():
    calls = []
    fns = [lambda name=name: calls.append(name) for name in 'abc']
    times = interleaved_ms(fns, warmup=2, repeats=4)
    # every function's warm-up first, then rounds forward, reversed, forward, reversed
    assert calls == list('aabbcc') + list('abc') + list('cba') + list('abc') + list('cba')
    assert [len(t) for t in times] == [4, 4, 4] and all(v >= 0 for t in times for v in t)


def test_spread_is_median_quartiles_and_range():
    assert spread([5.0, 1.0, 4.0, 2.0, 3.0]) == dict(median_ms=3.0, min_ms=1.0, max_ms=5.0, q1_ms=2.0, q3_ms=4.0, n=5)
    values = [1.0, 2.0, 4.0, 8.0]
    got = spread(values)
    assert (got['q1_ms'], got['median_ms'], got['q3_ms']) == pytest.approx(tuple(np.percentile(values, [25, 50, 75])))
    assert spread([7.0]) == dict(median_ms=7.0, min_ms=7.0, max_ms=7.0, q1_ms=7.0, q3_ms=7.0, n=1)
    with pytest.raises(ValueError):
        spread([])


def test_every_pair_interleaved_through_runtime_latencies(monkeypatch):
    """Fake runners record their calls and advance a fake clock: the result is each pair's own times, and the pairs
    run in the order of the first round, then reversed, ..."""
    clock = _Clock()
    monkeypatch.setattr(measure, 'time', SimpleNamespace(perf_counter=clock.perf_counter))
    nets = {'exit': _tiny(1), 'final': _tiny(2)}
    names = {id(net): label for label, net in nets.items()}
    calls = []
    cost = {('exit', 'eager'): 4.0, ('exit', 'onnxruntime'): 2.0, ('final', 'eager'): 8.0,
            ('final', 'onnxruntime'): 5.0}

    def fake_builder(runtime):
        def build(job):
            label = names[id(job.net)]
            assert job.x.shape == (1, 3, 6, 10)

            def run(batch):
                assert batch.shape == (1, 3, 6, 10) and batch.dtype == np.float32
                calls.append((label, runtime))
                clock.now += cost[(label, runtime)] * (1 + 0.5 * (len(calls) % 2)) / 1000  # ms, varying by call
            return run, f'fake {runtime}'
        return build

    for runtime in ('eager', 'onnxruntime'):
        monkeypatch.setitem(runtimes.BUILDERS, runtime, fake_builder(runtime))
    result = runtime_latencies(nets, (6, 10), runtimes=('eager', 'onnxruntime'), warmup=1, repeats=3)
    pairs = [('exit', 'eager'), ('exit', 'onnxruntime'), ('final', 'eager'), ('final', 'onnxruntime')]
    assert calls == pairs + pairs + pairs[::-1] + pairs
    # each pair's times are its own calls' (x1.5 on odd call numbers), whatever runs between them
    for (label, runtime), base in cost.items():
        numbers = [i + 1 for i, call in enumerate(calls) if call == (label, runtime)][1:]  # after the warm-up
        expected = [base * (1 + 0.5 * (n % 2)) for n in numbers]
        entry = result[label][runtime]
        assert entry['median_ms'] == pytest.approx(float(np.median(expected)))
        assert (entry['min_ms'], entry['max_ms'], entry['n']) == pytest.approx((min(expected), max(expected), 3))
        assert entry['threads'] == f'fake {runtime}'
    assert list(result['exit']) == ['eager', 'onnxruntime']


def test_a_missing_package_is_a_skipped_entry_naming_pip(monkeypatch):
    monkeypatch.setitem(sys.modules, 'openvino', None)  # import openvino raises ImportError
    monkeypatch.setitem(sys.modules, 'pnnx', None)
    result = runtime_latencies({'net': _tiny()}, (8, 8), runtimes=('eager', 'openvino', 'ncnn'), warmup=0,
                               repeats=1)
    entry = result['net']
    assert 'pip install openvino' in entry['openvino']['skipped'] and list(entry['openvino']) == ['skipped']
    assert 'pip install pnnx' in entry['ncnn']['skipped']  # ncnn's converter
    assert entry['eager']['n'] == 1 and entry['eager']['median_ms'] > 0
    with pytest.raises(UserError, match='unknown runtime'):
        runtime_latencies({'net': _tiny()}, (8, 8), runtimes=('tensorrt', ))
    assert runtime_latencies({}, (8, 8)) == {}


def test_network_key_is_options_and_values():
    net = _tiny()
    assert network_key(net, {'num_block': 1}) == network_key(copy.deepcopy(net), {'num_block': 1})
    assert network_key(net, {'num_block': 1}) != network_key(net, {'num_block': 2})
    other = copy.deepcopy(net)
    with torch.no_grad():
        other.conv_last.bias[0] += 1e-6
    assert network_key(other) != network_key(net)
    assert network_key(_tiny(seed=1)) != network_key(_tiny(seed=0))  # same architecture, other weights


def test_every_runtime_for_real_on_a_tiny_msrresnet(tmp_path):
    """Each conversion is written by the exporter's writers and verified within its tolerance (else the entry would
    be skipped with the converter's message), then timed in its own runtime."""
    for module in ('openvino', 'ncnn', 'pnnx'):
        require_module(module)
    nets = {'e1': _tiny(1), 'e2': _tiny(2)}
    result = runtime_latencies(nets, (12, 16), warmup=1, repeats=2, tmp_dir=str(tmp_path))
    for label in nets:
        assert list(result[label]) == list(RUNTIMES)
        for runtime, entry in result[label].items():
            assert 'skipped' not in entry, (label, runtime, entry)
            assert entry['n'] == 2 and 0 < entry['min_ms'] <= entry['q1_ms'] <= entry['median_ms'] <= entry['q3_ms'] \
                <= entry['max_ms'], (label, runtime)
    threads = {runtime: entry['threads'] for runtime, entry in result['e1'].items()}
    assert threads['eager'].startswith('PyTorch on cpu') and 'static QDQ INT8' in threads['onnxruntime-int8']
    assert 'f32 inference' in threads['openvino'] and threads['ncnn'].endswith('fp32')
    written = sorted(p.name for p in (tmp_path / 'net0').iterdir())
    for name in ('fp32.onnx', 'int8.onnx', 'openvino.openvino.xml', 'openvino.openvino.bin', 'ncnn.ncnn.param',
                 'ncnn.ncnn.bin'):
        assert name in written
