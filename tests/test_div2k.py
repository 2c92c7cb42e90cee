"""Download (resume, checksum), DIV2K end to end on a stand-in archive served locally, benchmark fetch, LMDB."""
import io
import os
import tarfile
import threading
import zipfile
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from os import path as osp

import cv2
import numpy as np
import pytest
from basicsr.data.paired_image_dataset import PairedImageDataset
from conftest import photo_crops

from srdistill.data.benchmarks import fetch_benchmarks
from srdistill.data.div2k import official_members, prepare_div2k
from srdistill.data.download import download, sha256sum
from srdistill.utils.errors import UserError
from srdistill.utils.matlab_imresize import imresize


class RangeHandler(SimpleHTTPRequestHandler):
    """Serves files, honouring ``Range: bytes=N-``; records the requests."""

    def send_head(self):
        self.server.requests.append((self.path, self.headers.get('Range')))
        path = self.translate_path(self.path)
        if not osp.isfile(path):
            self.send_error(404)
            return None
        data = open(path, 'rb').read()
        start = int(self.headers['Range'].split('=')[1].split('-')[0]) if self.headers.get('Range') else 0
        self.send_response(206 if start else 200)
        self.send_header('Content-Length', str(len(data) - start))
        self.end_headers()
        return io.BytesIO(data[start:])

    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    root = tmp_path / 'www'
    root.mkdir()
    httpd = ThreadingHTTPServer(('127.0.0.1', 0), partial(RangeHandler, directory=str(root)))
    httpd.requests = []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f'http://127.0.0.1:{httpd.server_address[1]}', httpd.requests
    httpd.shutdown()
    httpd.server_close()


def test_download_resumes_a_partial_file_and_checks_sha256(server, tmp_path):
    www, url, requests = server
    payload = os.urandom(300_000)
    (www / 'blob.bin').write_bytes(payload)
    dest = str(tmp_path / 'dl' / 'blob.bin')
    os.makedirs(osp.dirname(dest))
    open(dest + '.part', 'wb').write(payload[:100_000])  # an interrupted earlier download
    download(f'{url}/blob.bin', dest, sha256=sha256sum(str(www / 'blob.bin')), show_progress=False)
    assert open(dest, 'rb').read() == payload and not osp.exists(dest + '.part')
    assert requests == [('/blob.bin', 'bytes=100000-')]
    download(f'{url}/blob.bin', dest, show_progress=False)  # already there: no request
    assert len(requests) == 1

    with pytest.raises(UserError, match='downloaded with SHA-256 .* expected 00ff: the file is corrupt'):
        download(f'{url}/blob.bin', str(tmp_path / 'other.bin'), sha256='00ff', show_progress=False)
    assert not osp.exists(tmp_path / 'other.bin') and not osp.exists(str(tmp_path / 'other.bin') + '.part')


def test_download_errors_say_what_to_do(server, tmp_path):
    _, url, _ = server
    with pytest.raises(UserError, match=r'could not download .*/missing.zip .*place it at .*missing.zip .*--archive'):
        download(f'{url}/missing.zip', str(tmp_path / 'missing.zip'), show_progress=False)
    src = tmp_path / 'local.bin'
    src.write_bytes(b'abc')
    assert open(download(src.as_uri(), str(tmp_path / 'copy.bin'), show_progress=False), 'rb').read() == b'abc'


def _div2k_zip(path, split, ids, size=150):
    with zipfile.ZipFile(path, 'w') as zf:
        for i, crop in zip(ids, photo_crops(len(ids), size, seed=ids[0])):
            zf.writestr(f'DIV2K_{split}_HR/{i:04d}.png', cv2.imencode('.png', crop[:size, :size - 7])[1].tobytes())
    return [f'DIV2K_{split}_HR/{i:04d}.png' for i in ids]


def test_div2k_end_to_end_on_a_stand_in_archive(server, tmp_path):
    www, url, requests = server
    members = {'train': _div2k_zip(www / 'DIV2K_train_HR.zip', 'train', [1, 2, 3]),
               'valid': _div2k_zip(www / 'DIV2K_valid_HR.zip', 'valid', [801])}
    root = str(tmp_path / 'datasets')
    checksums = {split: (osp.getsize(www / f'DIV2K_{split}_HR.zip'), sha256sum(str(www / f'DIV2K_{split}_HR.zip')))
                 for split in ('train', 'valid')}
    folders = prepare_div2k(root, splits=('train', 'valid'), scales=(2, 3, 4), crop_size=72, step=36, base_url=url,
                            lmdb=True, npy=True, members=members, checksums=checksums, workers=2, show_progress=False)

    # 150x143 -> mod-12 crop 144x132 -> rows 0, 36, 72 ; columns 0, 36, 60 (flush) -> 9 sub-images per image
    hr_sub = sorted(os.listdir(folders['train_gt']))
    assert len(hr_sub) == 27 and hr_sub[0] == '0001_s001.png'
    full = cv2.imread(osp.join(root, 'DIV2K', 'DIV2K_train_HR', '0002.png'))[:144, :132]
    for s in (2, 3, 4):
        lr = cv2.imread(osp.join(folders[f'train_lq_x{s}'], '0002_s005.png'))  # row 1, column 1: y = x = 36
        assert np.array_equal(lr, imresize(full, 1 / s)[36 // s:108 // s, 36 // s:108 // s])
    assert sorted(os.listdir(folders['valid_gt'])) == ['0801.png']
    with open(osp.join(folders['train_gt_lmdb'], 'meta_info.txt')) as f:
        assert len(f.readlines()) == 27

    # BasicSR reads the LMDB pair as training data
    dataset = PairedImageDataset(dict(
        dataroot_gt=folders['train_gt_lmdb'], dataroot_lq=folders['train_lq_x4_lmdb'], io_backend={'type': 'lmdb'},
        phase='train', scale=4, gt_size=64, use_hflip=True, use_rot=True))
    item = dataset[0]
    assert tuple(item['gt'].shape) == (3, 64, 64) and tuple(item['lq'].shape) == (3, 16, 16)
    # --npy: the training folders (not the validation ones) as arrays of the same pixels
    assert 'valid_gt_npy' not in folders and folders['train_lq_x3_npy'] == folders['train_lq_x3'] + '_npy'
    assert len(os.listdir(folders['train_gt_npy'])) == 27
    assert np.array_equal(np.load(osp.join(folders['train_lq_x2_npy'], '0002_s005.npy')),
                          cv2.imread(osp.join(folders['train_lq_x2'], '0002_s005.png')))

    # rerun: nothing downloaded or rewritten
    stamp = os.stat(osp.join(folders['train_lq_x3'], '0003_s009.png')).st_mtime_ns
    n_requests = len(requests)
    prepare_div2k(root, splits=('train', 'valid'), scales=(2, 3, 4), crop_size=72, step=36, base_url=url, lmdb=True,
                  members=members, checksums=checksums, show_progress=False)
    assert len(requests) == n_requests
    assert os.stat(osp.join(folders['train_lq_x3'], '0003_s009.png')).st_mtime_ns == stamp


def test_div2k_archive_checks(server, tmp_path):
    www, url, _ = server
    _div2k_zip(www / 'DIV2K_train_HR.zip', 'train', [1, 2])
    # the official size and SHA-256 are checked: a stand-in served as the official archive is refused and removed
    with pytest.raises(UserError, match=r'DIV2K_train_HR.zip downloaded \d+ bytes, expected 3530603713'):
        prepare_div2k(str(tmp_path / 'd'), base_url=url, show_progress=False)
    assert not list((tmp_path / 'd' / 'DIV2K' / 'downloads').iterdir())
    with pytest.raises(UserError, match=r'DIV2K_train_HR.zip lacks DIV2K_train_HR/0003.png, .* \(798 in all\): it is '
                       'not the expected archive'):
        prepare_div2k(str(tmp_path / 'd'), base_url=url, checksums={}, show_progress=False)
    assert official_members('valid')[0] == 'DIV2K_valid_HR/0801.png' and len(official_members('train')) == 800
    (tmp_path / 'own').mkdir()
    with pytest.raises(UserError, match=r'own/DIV2K_train_HR.zip not found: --archive-dir must hold'):
        prepare_div2k(str(tmp_path / 'd'), archive_dir=str(tmp_path / 'own'), show_progress=False)
    (tmp_path / 'own' / 'DIV2K_train_HR.zip').write_bytes(b'PK\x03\x04 truncated')
    with pytest.raises(UserError, match=r'is 14 bytes, the official archive 3530603713: it is incomplete'):
        prepare_div2k(str(tmp_path / 'd'), archive_dir=str(tmp_path / 'own'), show_progress=False)
    with pytest.raises(UserError, match='is not a readable zip or tar archive .* delete it'):
        prepare_div2k(str(tmp_path / 'd'), archive_dir=str(tmp_path / 'own'), checksums={}, show_progress=False)


def test_benchmark_fetch_from_edsr_style_tar(server, tmp_path):
    www, url, _ = server
    with tarfile.open(www / 'benchmark.tar', 'w') as tf:
        for i, crop in enumerate(photo_crops(5, 50)):
            data = cv2.imencode('.png', crop)[1].tobytes()
            info = tarfile.TarInfo(f'benchmark/Set5/HR/img{i}.png')
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    root = str(tmp_path / 'datasets')
    out = fetch_benchmarks(root, names=('Set5', ), scales=(2, 4), url=f'{url}/benchmark.tar', show_progress=False)
    assert out == {'Set5': osp.join(root, 'Set5')}
    assert sorted(os.listdir(osp.join(root, 'Set5', 'LR_bicubic', 'X4'))) == [f'img{i}.png' for i in range(5)]
    assert cv2.imread(osp.join(root, 'Set5', 'LR_bicubic', 'X2', 'img0.png')).shape == (25, 25, 3)
    with pytest.raises(UserError, match=r'expected 14 HR images under benchmark/Set14/HR/, found 0'):
        fetch_benchmarks(root, names=('Set14', ), archive=osp.join(root, 'downloads', 'benchmark.tar'),
                         show_progress=False)
    with pytest.raises(UserError, match=r"unknown benchmark set\(s\) \['Set15'\]"):
        fetch_benchmarks(root, names=('Set15', ))
