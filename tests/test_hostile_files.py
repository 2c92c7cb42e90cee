"""Hostile and half-written files: non-finite weights, empty checkpoints, leftovers of a killed run, corrupt pixels."""
import json
import os
import subprocess
import sys
from os import path as osp

import cv2
import numpy as np
import pytest
import torch
from conftest import make_paired_folder, photo_crops

from srdistill.archs.checkpoints import check_finite, load_checkpoint, read_state_dicts
from srdistill.archs.multi_exit_srresnet_arch import MultiExitSRResNet
from srdistill.data.download import sha256sum
from srdistill.export import formats
from srdistill.export.export_cli import main as export_main
from srdistill.utils.errors import UserError, first_line


@pytest.fixture
def net():
    torch.manual_seed(0)
    return MultiExitSRResNet(num_feat=8, num_block=4, exits=[2], upscale=4).eval()


def _save(path, state, ema=None):
    torch.save({'params': state, **({'params_ema': ema} if ema is not None else {})}, path)
    return str(path)


def dead_pid():
    """The id of a process that has ended (for leftovers of a killed run)."""
    proc = subprocess.Popen([sys.executable, '-c', ''])
    proc.wait()
    return proc.pid


# --- item 5: an exception without a message ---------------------------------------------------------------------

def test_first_line_of_an_empty_message_is_the_exception_class():
    assert first_line(EOFError()) == 'EOFError'
    assert first_line(ValueError('\n')) == 'ValueError'
    assert first_line(RuntimeError('first\nsecond'), limit=3) == 'fir'


def test_zero_byte_checkpoint_is_one_line(tmp_path, capsys):
    (tmp_path / 'empty.pth').write_bytes(b'')
    with pytest.raises(UserError, match=r'empty.pth is not a loadable PyTorch checkpoint \(EOFError\)'):
        read_state_dicts(str(tmp_path / 'empty.pth'))
    assert export_main(['--ckpt', str(tmp_path / 'empty.pth'), '--out', str(tmp_path / 'o')]) == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and 'empty.pth is not a loadable PyTorch checkpoint (EOFError)' in err


# --- item 4: non-finite weights are refused ---------------------------------------------------------------------

def test_check_finite_names_the_first_non_finite_tensor(net):
    state = net.state_dict()
    check_finite(state, 'ok.pth')  # finite: no error
    state['body.1.conv2.weight'][0, 0, 0, 0] = float('inf')
    state['conv_last.weight'][0, 0, 0, 0] = float('nan')
    with pytest.raises(UserError, match=r'bad.pth holds non-finite weights: body\.1\.conv2\.weight has 1 inf/nan '
                       r'value.*train again from the last finite checkpoint'):
        check_finite(state, 'bad.pth')


@pytest.mark.parametrize('key', ['params', 'params_ema'])
def test_nan_checkpoint_refused_by_evaluate_export_and_infer(net, tmp_path, capsys, key):
    nan = {k: v.clone() for k, v in net.state_dict().items()}
    nan['conv_first.weight'][:] = float('nan')
    finite = net.state_dict()
    path = _save(tmp_path / 'nan.pth', *((nan, finite) if key == 'params' else (finite, nan)))
    expected = f'nan.pth holds non-finite weights: {key}.conv_first.weight has 216 inf/nan values'
    with pytest.raises(UserError, match=expected):
        load_checkpoint(path)
    from srdistill.evaluation.evaluate_cli import main as evaluate_main
    from srdistill.inference.infer_cli import main as infer_main
    gt, lq = make_paired_folder(str(tmp_path / 'data'), n=1, size=32)
    runs = [export_main(['--ckpt', path, '--out', str(tmp_path / 'o')]),
            evaluate_main(['--ckpt', path, '--out', str(tmp_path / 'e'), '--no-latency', '-opt',
                           _test_opt(tmp_path, gt, lq)]),
            infer_main(['--model', path, '--input', lq, '--output', str(tmp_path / 'i')])]
    assert runs == [2, 2, 2]
    assert capsys.readouterr().err.count(expected) == 3
    assert not any((tmp_path / d).exists() and os.listdir(tmp_path / d) for d in ('o', 'e', 'i'))


def _test_opt(tmp_path, gt, lq):
    import yaml
    path = tmp_path / 'test.yml'
    path.write_text(yaml.safe_dump({'datasets': {'test_1': {'name': 'one', 'dataroot_gt': gt, 'dataroot_lq': lq}}}))
    return str(path)


@pytest.mark.parametrize('diff', [float('nan'), float('inf')])
def test_write_checked_fails_a_non_finite_difference(tmp_path, diff):
    target = tmp_path / 'm.onnx'

    def write(tmp):
        open(tmp, 'wb').close()
        return diff

    with pytest.raises(UserError, match=r'm.onnx gives non-finite output \((nan|inf)\) on the check image'):
        formats.write_checked(str(target), write, float('inf'))
    assert os.listdir(tmp_path) == []


# --- weak item: a killed export, and a rerun ---------------------------------------------------------------------

_KILLED_EXPORT = '''
import os, signal, sys
from srdistill.export import exporter, formats
where, ckpt, out = sys.argv[1:]
if where == 'model':  # killed while writing a model: its temporary file stays
    write_pth = formats.write_pth
    def write_pth_and_die(path, **kwargs):
        write_pth(path, **kwargs)
        os.kill(os.getpid(), signal.SIGKILL)
    formats.write_pth = write_pth_and_die
else:  # killed between the second model and its sidecar
    write_checked, sidecars = formats.write_checked, []
    def die_before_the_second_sidecar(path, write, tolerance):
        if path.endswith('.json'):
            if sidecars:
                os.kill(os.getpid(), signal.SIGKILL)
            sidecars.append(path)
        return write_checked(path, write, tolerance)
    formats.write_checked = die_before_the_second_sidecar
exporter.export(ckpt, ('pth', ), out, exits='all')
'''


def _killed_export(where, ckpt, out):
    proc = subprocess.run([sys.executable, '-c', _KILLED_EXPORT, where, ckpt, out], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == -9, proc.stderr


def test_rerun_after_killed_exports_completes_what_is_missing(net, tmp_path):
    ckpt, out = _save(tmp_path / 'net.pth', net.state_dict()), str(tmp_path / 'o')
    _killed_export('sidecar', ckpt, out)
    assert sorted(os.listdir(out)) == ['net_e2_x4.pth', 'net_e2_x4.pth.json', 'net_e4_x4.pth']  # e4 has no sidecar
    kept = os.stat(osp.join(out, 'net_e2_x4.pth')).st_mtime_ns
    _killed_export('model', ckpt, out)  # the rerun keeps e2, redoes e4 and is killed writing it
    leftovers = [n for n in os.listdir(out) if 'partial' in n]
    assert len(leftovers) == 1 and leftovers[0].startswith('.net_e4_x4.partial')
    (tmp_path / 'o' / f'net_e4_x4.partial{dead_pid()}.pth').write_bytes(b'')  # an older run's name, not hidden
    sidecars = formats_export(ckpt, out)
    assert [s['file'] for s in sidecars] == ['net_e2_x4.pth', 'net_e4_x4.pth']
    assert sorted(os.listdir(out)) == ['net_e2_x4.pth', 'net_e2_x4.pth.json', 'net_e4_x4.pth', 'net_e4_x4.pth.json']
    assert os.stat(osp.join(out, 'net_e2_x4.pth')).st_mtime_ns == kept
    for s in sidecars:
        assert json.load(open(osp.join(out, s['file'] + '.json'))) == s
        assert s['sha256'] == sha256sum(osp.join(out, s['file']))
    with pytest.raises(UserError, match=r'net_e2_x4.pth exists \(2 of the exports do\); pass --overwrite'):
        formats_export(ckpt, out)


def formats_export(ckpt, out, **kwargs):
    from srdistill.export.exporter import export
    return export(ckpt, ('pth', ), out, exits='all', **kwargs)


def test_export_of_another_checkpoint_in_the_way_needs_overwrite(net, tmp_path):
    (tmp_path / 'a').mkdir(), (tmp_path / 'b').mkdir()
    first = _save(tmp_path / 'a' / 'net.pth', net.state_dict())
    second = _save(tmp_path / 'b' / 'net.pth', {k: v * 0.5 for k, v in net.state_dict().items()})
    out = str(tmp_path / 'o')
    from srdistill.export.exporter import export
    export(first, ('pth', ), out, exits=[2])
    with pytest.raises(UserError, match=r'net_e2_x4.pth exists, exported from another checkpoint or --param-key '
                       r'\(1 of the exports are\); pass --overwrite'):
        export(second, ('pth', ), out, exits=[2, 4])
    assert sorted(os.listdir(out)) == ['net_e2_x4.pth', 'net_e2_x4.pth.json']
    sidecars = export(second, ('pth', ), out, exits=[2, 4], overwrite=True)
    on_disk = [json.load(open(osp.join(out, f'net_e{d}_x4.pth.json'))) for d in (2, 4)]
    assert on_disk == sidecars and sidecars[0]['source_sha256'] == sha256sum(second)


# --- weak item: a killed prepare_data, and a rerun ---------------------------------------------------------------

_KILLED_PREPARE = '''
import os, signal, sys
from srdistill.data import prepare
src, out = sys.argv[1:]
imwrite, calls = prepare.cv2.imwrite, []
def die_after_the_third(path, img):
    calls.append(imwrite(path, img))
    if len(calls) == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    return calls[-1]
prepare.cv2.imwrite = die_after_the_third
prepare.prepare_paired_folder([src], out, crop_size=48, step=48, workers=1, show_progress=False)
'''


@pytest.fixture
def hr_photos(tmp_path):
    folder = tmp_path / 'photos'
    folder.mkdir()
    for i, img in enumerate(photo_crops(2, 96)):
        cv2.imwrite(str(folder / f'p{i}.png'), img)
    return str(folder)


def test_rerun_after_a_killed_prepare_removes_its_leftovers_and_completes(hr_photos, tmp_path):
    from srdistill.data.checks import check_paired_folders
    from srdistill.data.prepare import prepare_paired_folder
    out = str(tmp_path / 'set')
    proc = subprocess.run([sys.executable, '-c', _KILLED_PREPARE, hr_photos, out], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == -9, proc.stderr
    hr, lr = osp.join(out, 'HR_sub'), osp.join(out, 'LR_bicubic', 'X4_sub')
    # killed writing the third HR sub-image: its temporary file is hidden from the dataset's listing
    assert [n for n in os.listdir(hr) if 'partial' in n] == [f'.p0_s003.partial{proc_pid(hr)}.png']
    assert sorted(os.listdir(hr))[-2:] == ['p0_s001.png', 'p0_s002.png']
    (tmp_path / 'set' / 'HR_sub' / f'p1_s001.partial{dead_pid()}.png').write_bytes(b'')  # older runs' name: 0 bytes
    for overwrite in (True, False):  # --overwrite removes them too
        summary = prepare_paired_folder([hr_photos], out, crop_size=48, step=48, workers=1, show_progress=False,
                                        overwrite=overwrite)
        assert summary['written'] == (16 if overwrite else 0)
        assert [n for n in os.listdir(hr) + os.listdir(lr) if 'partial' in n] == []
        assert check_paired_folders(hr, lr, 4, 'datasets.train', exact=True) == 8


def proc_pid(folder):
    """The process id in the one temporary file name of ``folder``."""
    from srdistill.utils.partial_files import partial_pid
    return next(partial_pid(n) for n in os.listdir(folder) if 'partial' in n)


def test_up_front_check_names_a_leftover_temporary_file(tmp_path):
    from srdistill.data.checks import check_paired_folders
    gt, lq = make_paired_folder(str(tmp_path / 'd'), n=2, size=48)
    leftover = f'img01.partial{dead_pid()}.png'
    (tmp_path / 'd' / 'HR' / leftover).write_bytes(b'')
    with pytest.raises(UserError, match=rf'datasets.train.dataroot_gt: {gt} holds {leftover}, left by an interrupted '
                       r'run: run the command that made the folder again \(tools/prepare_data.py removes such files'):
        check_paired_folders(gt, lq, 4, 'datasets.train')


def test_npy_pack_removes_leftovers_of_a_killed_run(tmp_path):
    from srdistill.data.npy_pack import pack_npy
    gt, _ = make_paired_folder(str(tmp_path / 'd'), n=2, size=48)
    out = tmp_path / 'd' / 'HR_npy'
    out.mkdir()
    for name in (f'img00.npy.partial{dead_pid()}.npy', f'.img01.partial{dead_pid()}.npy'):  # older and newer names
        (out / name).write_bytes(b'\x93NUMPY')
    pack_npy(gt, workers=1, show_progress=False)
    assert sorted(os.listdir(out)) == ['img00.npy', 'img01.npy']
    assert np.array_equal(np.load(out / 'img01.npy'), cv2.imread(osp.join(gt, 'img01.png')))


# --- weak item: a.png and a.PNG ----------------------------------------------------------------------------------

def test_images_with_the_same_base_name_are_named(tmp_path):
    from srdistill.data.npy_pack import pack_npy
    from srdistill.data.prepare import prepare_paired_folder
    src = tmp_path / 'src'
    src.mkdir()
    a, b = photo_crops(2, 48)
    cv2.imwrite(str(src / 'a.png'), a)
    cv2.imwrite(str(src / 'a.PNG'), b)
    with pytest.raises(UserError, match=rf'{src}/a.PNG and {src}/a.png would both be written as a.png: rename one '
                       'of them'):
        prepare_paired_folder([str(src)], str(tmp_path / 'out'), workers=1, show_progress=False)
    assert not (tmp_path / 'out').exists()
    with pytest.raises(UserError, match=rf'{src}/a.PNG and {src}/a.png would both be written as a.npy: rename one '
                       'of them'):
        pack_npy(str(src), workers=1, show_progress=False)


# --- weak item: corrupt pixel data with the length and the end chunk intact ---------------------------------------

def corrupt_png(path, fix_checksum=False):
    """Zero 64 bytes in the middle of the first IDAT chunk (its CRC updated when ``fix_checksum``)."""
    import zlib
    data = bytearray(open(path, 'rb').read())
    start = data.index(b'IDAT')
    length = int.from_bytes(data[start - 4:start], 'big')
    data[start + 4 + length // 2:start + 4 + length // 2 + 64] = bytes(64)
    if fix_checksum:
        data[start + 4 + length:start + 8 + length] = zlib.crc32(bytes(data[start:start + 4 + length])).to_bytes(4,
                                                                                                                  'big')
    size = osp.getsize(path)
    open(path, 'wb').write(data)
    assert osp.getsize(path) == size and data.endswith(b'IEND\xaeB`\x82')


def test_corrupt_pixel_data_is_named_up_front(tmp_path):
    from srdistill.data.checks import check_paired_folders
    gt, lq = make_paired_folder(str(tmp_path / 'd'), n=2, size=48)
    corrupt_png(osp.join(gt, 'img01.png'))
    with pytest.raises(UserError, match=rf'{gt}/img01.png is damaged: its PNG chunk IDAT at byte \d+ fails its '
                       'checksum. Re-create or re-download it'):
        check_paired_folders(gt, lq, 4, 'datasets.train')


def test_a_failed_decode_in_a_dataset_names_the_file(tiny_opt):
    from basicsr.data.paired_image_dataset import PairedImageDataset

    from srdistill.data.decode_guard import name_undecodable
    opt = dict(tiny_opt['datasets']['train'], phase='train', scale=4)
    corrupt_png(osp.join(opt['dataroot_lq'], 'img02.png'), fix_checksum=True)  # passes the up-front check
    guarded = name_undecodable(type('GuardedPairedImageDataset', (PairedImageDataset, ), {}))(opt)
    index = [p['lq_path'] for p in guarded.paths].index(osp.join(opt['dataroot_lq'], 'img02.png'))
    with pytest.raises(UserError, match=rf'{opt["dataroot_lq"]}/img02.png cannot be decoded \(AttributeError\): '
                       'its data is damaged. Re-create or re-download it'):
        guarded[index]
    assert guarded[(index + 1) % 4]['gt'].shape == (3, 32, 32)  # the other samples load


def test_a_damaged_array_in_the_npy_dataset_names_the_file(tmp_path):
    from srdistill.data.npy_pack import pack_npy
    from srdistill.data.paired_npy_dataset import PairedNpyDataset
    gt, lq = (pack_npy(f, workers=1, show_progress=False) for f in make_paired_folder(str(tmp_path / 'd'), n=2))
    dataset = PairedNpyDataset(dict(dataroot_gt=gt, dataroot_lq=lq, phase='val', scale=4, io_backend={'type': 'disk'},
                                    filename_tmpl='{}'))
    with open(osp.join(lq, 'img01.npy'), 'r+b') as f:  # damaged after the up-front check
        f.write(b'garbage!')
    assert dataset[0]['lq'].shape == (3, 12, 12)
    with pytest.raises(UserError, match=rf'{lq}/img01.npy cannot be decoded \(ValueError\)'):
        dataset[1]


def test_training_on_a_damaged_png_stops_before_anything_is_written(tiny_opt, tmp_path):
    from conftest import run_train, write_opt
    corrupt_png(osp.join(tiny_opt['datasets']['train']['dataroot_gt'], 'img01.png'))
    proc = run_train(tmp_path, '-opt', write_opt(tmp_path / 'tiny.yml', tiny_opt))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith('srdistill: error: ')
    assert 'train/HR/img01.png is damaged: its PNG chunk IDAT' in proc.stderr
    assert not (tmp_path / 'experiments').exists()


def test_split_removes_leftovers_of_a_killed_run(hr_photos, tmp_path):
    from srdistill.data.checks import check_paired_folders
    from srdistill.data.prepare import prepare_paired_folder
    from srdistill.data.splits import carve_split
    source = str(tmp_path / 'set')
    prepare_paired_folder([hr_photos], source, workers=1, show_progress=False)
    val_hr = tmp_path / 'set_val' / 'HR'
    val_hr.mkdir(parents=True)
    (val_hr / f'p0.png.partial{dead_pid()}').write_bytes(b'')  # the name a killed split left before
    split = carve_split(source, fraction=0.5, list_dir=str(tmp_path / 'lists'))
    assert len(split['val']) == 1 and os.listdir(val_hr) == split['val']
    lq = osp.join(split['val_root'], 'LR_bicubic', 'X4')
    assert check_paired_folders(str(val_hr), lq, 4, 'datasets.val') == 1
