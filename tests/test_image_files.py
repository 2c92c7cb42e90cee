"""The one image lister and the one image reader (srdistill.data.image_files) that every tool uses."""
import cv2
import numpy as np
import pytest
from conftest import photo_crops

from srdistill.data.image_files import (
    RGB_FLOAT,
    UINT8,
    UNCHANGED,
    check_complete,
    find_images,
    list_images,
    read_image,
    to_uint8,
)
from srdistill.utils.errors import UserError


@pytest.fixture()
def folder(tmp_path):
    """b.png, a.jpg, c.bmp (real photo crops), a note, a hidden image and a sub-folder."""
    images = photo_crops(3, 12)
    for img, name in zip(images, ('b.png', 'a.jpg', 'c.bmp')):
        cv2.imwrite(str(tmp_path / name), img)
    (tmp_path / 'notes.txt').write_text('not an image')
    cv2.imwrite(str(tmp_path / '.hidden.png'), images[0])
    (tmp_path / 'sub.png').mkdir()
    return tmp_path


def test_find_images_folders_files_globs_in_order_without_repeats(folder):
    assert find_images([str(folder)]) == [str(folder / n) for n in ('a.jpg', 'b.png', 'c.bmp')]
    found = find_images([str(folder / 'c.bmp'), str(folder / '*.png'), str(folder)])
    assert found == [str(folder / n) for n in ('c.bmp', 'b.png', 'a.jpg')]


@pytest.mark.parametrize('inputs, message', [
    (['nowhere'], 'nowhere does not exist.'),
    (['notes.txt'], 'notes.txt is not an image file (allowed: .png .jpg'),
    (['*.gif'], 'no image files (.png .jpg .jpeg .bmp .tif .tiff .webp .ppm .pgm) found in'),
])
def test_find_images_refuses(folder, inputs, message):
    with pytest.raises(UserError) as err:
        find_images([str(folder / i) for i in inputs])
    assert message in str(err.value)


def test_find_images_same_base_name(folder):
    cv2.imwrite(str(folder / 'a.png'), photo_crops(1, 12)[0])
    with pytest.raises(UserError, match=r'a.jpg and .*a.png would both be written as a.png: rename one'):
        find_images([str(folder)])
    # a caller that names its outputs itself (inference keeps the extension) checks them itself
    assert len(find_images([str(folder)], written_as=None)) == 4


def test_list_images_of_a_dataset_folder_and_of_an_input_folder(folder):
    with pytest.raises(UserError, match=r'^HR: .* holds files that are not images: notes.txt. Move them out'):
        list_images(str(folder), 'HR')
    assert list_images(str(folder), 'HR', only_images=False) == ['a.jpg', 'b.png', 'c.bmp']
    with pytest.raises(UserError, match=r'^HR: folder .*nowhere does not exist. Prepare it.$'):
        list_images(str(folder / 'nowhere'), 'HR', hint='Prepare it.')
    (folder / 'empty').mkdir()
    with pytest.raises(UserError, match=r'^HR: folder .*empty holds no images.$'):
        list_images(str(folder / 'empty'), 'HR')


def test_read_image_forms(tmp_path):
    bgr = photo_crops(1, 8)[0]
    alpha = np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000
    bgra16 = np.dstack([bgr.astype(np.uint16) * 257 + 100, alpha])  # 16-bit BGRA, not multiples of 257
    gray16 = bgra16[..., 0]
    cv2.imwrite(str(tmp_path / 'bgra16.png'), bgra16)
    cv2.imwrite(str(tmp_path / 'gray16.png'), gray16)

    unchanged = read_image(str(tmp_path / 'bgra16.png'))  # the default: what inference keeps
    assert unchanged.dtype == np.uint16 and np.array_equal(unchanged, bgra16)
    assert np.array_equal(read_image(str(tmp_path / 'gray16.png'), UNCHANGED), gray16)

    eight = read_image(str(tmp_path / 'bgra16.png'), UINT8)  # alpha dropped, round(v / 257)
    assert eight.shape == (8, 8, 3) and np.array_equal(eight, np.floor(bgra16[..., :3] / 257 + 0.5))
    assert np.array_equal(eight, bgr)  # (257 v + 100) / 257 rounds back to v
    gray8 = read_image(str(tmp_path / 'gray16.png'), UINT8)
    assert gray8.shape == (8, 8) and np.array_equal(gray8, to_uint8(gray16))

    rgb = read_image(str(tmp_path / 'bgra16.png'), RGB_FLOAT)
    assert rgb.dtype == np.float32 and rgb.shape == (8, 8, 3)
    assert np.array_equal(rgb, (bgr[..., ::-1] / 255.).astype(np.float32))
    rgb_gray = read_image(str(tmp_path / 'gray16.png'), RGB_FLOAT)
    assert np.array_equal(rgb_gray, np.repeat((gray8[..., None] / 255.).astype(np.float32), 3, axis=2))


def test_read_image_refuses(tmp_path):
    cv2.imwrite(str(tmp_path / 'a.png'), photo_crops(1, 8)[0])
    data = (tmp_path / 'a.png').read_bytes()
    (tmp_path / 'cut.png').write_bytes(data[:len(data) // 2])
    with pytest.raises(UserError, match=r'cut.png is truncated'):
        read_image(str(tmp_path / 'cut.png'))
    with pytest.raises(UserError, match=r'cut.png is truncated'):
        check_complete(str(tmp_path / 'cut.png'))
    (tmp_path / 'text.png').write_bytes(b'plain text, IEND')
    with pytest.raises(UserError, match=r'text.png cannot be read as an image. Remove it or re-create it.'):
        read_image(str(tmp_path / 'text.png'), UINT8)
    cv2.imwrite(str(tmp_path / 'f.tiff'), np.zeros((4, 4, 3), np.float32))
    with pytest.raises(UserError, match=r'f.tiff: unsupported pixel type float32'):
        read_image(str(tmp_path / 'f.tiff'), UINT8)
    assert read_image(str(tmp_path / 'f.tiff')).dtype == np.float32  # unchanged: the caller decides
    with pytest.raises(ValueError, match="form must be one of"):
        read_image(str(tmp_path / 'a.png'), 'rgb')
