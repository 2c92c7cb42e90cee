"""Metrics. Every ``*_metric.py`` file here is imported, so its functions register in BasicSR's ``METRIC_REGISTRY``."""
from srdistill.utils.registry import import_components

_modules = import_components(__name__, __file__, '_metric.py')
