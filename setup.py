"""srdistill: lightweight image super-resolution by self-distillation, as a BasicSR extension.

Install (torch first: BasicSR's build wants it, and pinning it keeps pip off the CPU-only 2.13 wheel):
    pip install torch==2.14.1 torchvision==0.29.1
    pip install --no-build-isolation -e .[test]      (.[runtimes]: only the OpenVINO/ncnn runtimes and pnnx)
or simply ``make test`` / ``make demo``, which do this in a ``.venv``.
"""
from os import path as osp

from setuptools import find_packages, setup

here = osp.dirname(osp.abspath(__file__))
version = {}
RUNTIMES = ['openvino', 'ncnn', 'pnnx']
with open(osp.join(here, 'srdistill', 'version.py')) as f:
    exec(f.read(), version)

setup(
    name='srdistill',
    version=version['__version__'],
    description='Lightweight image super-resolution by self-distillation (multi-exit SRResNet), on BasicSR',
    long_description=open(osp.join(here, 'README.md')).read() if osp.exists(osp.join(here, 'README.md')) else '',
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    python_requires='>=3.9',
    packages=find_packages(include=['srdistill', 'srdistill.*']),
    install_requires=[
        'torch>=2.6',  # torch.load defaults to weights_only=True from 2.6 on (BasicSR's loaders rely on it)
        'torchvision>=0.21',
        'basicsr==1.4.2',  # srdistill/compat.py fixes exactly this release
        'numpy',
        'opencv-python',
        'pillow',
        'pyyaml',
        'scikit-image',
        'scipy',  # t intervals of the paired differences (srdistill/ablation/stats.py)
        'tensorboard',
        'tqdm',
        'lpips',
        'safetensors',
        'matplotlib',
        'onnx',
        'onnxruntime',
        'onnxscript',  # torch.onnx's exporter (torch.export based) needs it
        'optuna',  # tools/tune.py: the hyper-parameter search and its on-disk study
    ],
    extras_require={
        # tools/export.py --format openvino / ncnn and tools/infer.py on those files (docs/export_runtimes.md);
        # each is imported only where its format is used, and its absence is one message naming it
        'runtimes': RUNTIMES,
        'test': ['pytest', 'ruff', *RUNTIMES],  # the tests run every format for real
    },
)
