"""Speed benchmark of training and inference (tools/benchmark.py)."""
