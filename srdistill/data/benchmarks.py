"""The four SR benchmark sets from EDSR's ``benchmark.tar`` (Set5, Set14, BSD100 as ``B100``, Urban100).

Only the HR images are taken from the archive; the LR images are made here, exactly (see ``prepare.py``), so the
same command also works for any HR folder.
"""
from os import path as osp

from srdistill.data.archives import extract, member_names
from srdistill.data.download import download
from srdistill.data.prepare import prepare_paired_folder
from srdistill.utils.errors import UserError

BENCHMARK_URL = 'https://cv.snu.ac.kr/research/EDSR/benchmark.tar'
# our name -> (folder in the archive, number of HR images)
BENCHMARKS = {'Set5': ('Set5', 5), 'Set14': ('Set14', 14), 'BSD100': ('B100', 100), 'Urban100': ('Urban100', 100)}


def fetch_benchmarks(root, names=tuple(BENCHMARKS), scales=(2, 3, 4), url=BENCHMARK_URL, archive=None, workers=None,
                     show_progress=True):
    """Fetch (or reuse) ``benchmark.tar`` and prepare each named set under ``<root>/<name>/{HR,LR_bicubic/X<s>}``.

    Args:
        root (str): Datasets folder.
        names (tuple[str]): Sets among ``BENCHMARKS``.
        scales (tuple[int]): LR scales. Default: (2, 3, 4).
        url (str): Archive address. Default: EDSR's.
        archive (str | None): A local copy of the archive (no download). Default: ``<root>/downloads/benchmark.tar``.
        workers (int | None): Processes. Default: all CPUs.
        show_progress (bool): Progress bars. Default: True.

    Returns:
        dict[str, str]: Prepared set folders by name.
    """
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        raise UserError(f'unknown benchmark set(s) {unknown}; known: {list(BENCHMARKS)}.')
    if archive is None:
        archive = download(url, osp.join(root, 'downloads', 'benchmark.tar'), show_progress=show_progress)
    members = member_names(archive)
    prepared = {}
    for name in names:
        folder, count = BENCHMARKS[name]
        prefix = f'benchmark/{folder}/HR/'
        hr = [m for m in members if m.startswith(prefix) and '/' not in m[len(prefix):]]
        if len(hr) != count:
            raise UserError(f'{archive}: expected {count} HR images under {prefix}, found {len(hr)}. It is not EDSR\'s '
                            'benchmark.tar, or it is incomplete: delete it and run the command again.')
        out = osp.join(root, name)
        extract(archive, {m: osp.join(out, 'HR', osp.basename(m)) for m in hr}, show_progress=show_progress)
        prepare_paired_folder([osp.join(out, 'HR')], out, scales=scales, mod_crop_hr=False, keep_channels=True,
                              workers=workers, show_progress=show_progress)
        prepared[name] = out
    return prepared
