"""The ablation runner: fair baselines and distillation methods trained and evaluated alike (``tools/ablate.py``)."""
