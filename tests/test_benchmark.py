"""tools/benchmark.py runs on a tiny configuration and writes a complete report (it is a tool, not a timed test)."""
import json

from srdistill.benchmark.run import markdown, run_benchmark, write_report


def test_benchmark_runs_on_a_tiny_config(tmp_path):
    report = run_benchmark(num_feat=4, num_block=3, exit_depth=1, batch=2, gt_size=16, lr_size=(8, 8), device='cpu',
                           warmup=1, repeats=1, compile_=False)
    assert [r['model'] for r in report['training']] == [
        'self-distillation (exit 1)', 'same trunk, no exit', 'BasicSR SRModel + MSRResNet']
    assert all(r['step_s'] > 0 and r['samples_per_s'] > 0 for r in report['training'])
    sd, plain, basic = report['training']
    assert sd['forward_gmacs'] > plain['forward_gmacs'] == basic['forward_gmacs']
    assert [r['output'] for r in report['inference']] == ['e1', 'e3']
    assert set(report['inference'][0]['ms']) == {'eager', 'channels_last', 'onnxruntime'}
    assert report['matmul_gflops'] > 0 and report['environment']['torch']
    md, js = write_report(report, str(tmp_path / 'bench.md'))
    text = open(md).read()
    assert "our plain path vs BasicSR's own" in text and 'fewer multiply-adds' in text and 'GFLOP/s' in text
    assert json.load(open(js))['settings']['num_block'] == 3 and text == markdown(report)
