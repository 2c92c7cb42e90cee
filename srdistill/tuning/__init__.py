"""Hyper-parameter search (``tools/tune.py``) on a validation split of the training images."""
