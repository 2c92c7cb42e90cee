"""Resumable downloads of dataset archives (http, https and file URLs), with optional checksum verification."""
import hashlib
import os
import shutil
import urllib.error
import urllib.request
from os import path as osp

from tqdm import tqdm

from srdistill.utils.errors import UserError

_CHUNK = 1 << 20


def sha256sum(path):
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(_CHUNK), b''):
            digest.update(block)
    return digest.hexdigest()


def download(url, dest, sha256=None, size=None, show_progress=True, timeout=60):
    """Download ``url`` to ``dest``, resuming a partial download, unless ``dest`` already exists.

    Bytes go to ``dest + '.part'``; an interrupted download continues from there with an HTTP ``Range`` request (a
    server that ignores it makes us start over). Only a complete (and, with ``sha256``, verified) file is renamed to
    ``dest``.

    Args:
        url (str): ``http://``, ``https://`` or ``file://`` address.
        dest (str): Target file.
        sha256 (str | None): Expected SHA-256; a mismatch removes the download and raises. Default: None (no check).
        size (int | None): Expected size in bytes, checked before the hash. Default: None (no check).
        show_progress (bool): Progress bar. Default: True.
        timeout (float): Socket timeout in seconds. Default: 60.

    Returns:
        str: ``dest``.

    Raises:
        UserError: The address cannot be reached (with what to do instead) or the checksum does not match.
    """
    if osp.exists(dest):
        return dest
    os.makedirs(osp.dirname(osp.abspath(dest)), exist_ok=True)
    part = dest + '.part'
    have = osp.getsize(part) if osp.exists(part) else 0
    request = urllib.request.Request(url, headers={'Range': f'bytes={have}-'} if have else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            resumed = have and getattr(response, 'status', None) == 206
            if not resumed:
                have = 0
            length = response.headers.get('Content-Length')
            total = have + int(length) if length else None
            with open(part, 'ab' if resumed else 'wb') as f, tqdm(
                    total=total, initial=have, unit='B', unit_scale=True, desc=osp.basename(dest),
                    disable=not show_progress) as bar:
                for block in iter(lambda: response.read(_CHUNK), b''):
                    f.write(block)
                    bar.update(len(block))
    except (urllib.error.URLError, OSError, ValueError) as err:
        raise UserError(f'could not download {url} ({getattr(err, "reason", err)}). Download it by other means and '
                        f'place it at {dest} (or pass its path with --archive); a partial download is kept in '
                        f'{part} and resumed next time.') from None
    if total is not None and osp.getsize(part) != total:
        raise UserError(f'download of {url} stopped at {osp.getsize(part)} of {total} bytes; run the command again '
                        'to resume it.')
    if size is not None and osp.getsize(part) != size:
        got = osp.getsize(part)
        os.remove(part)
        raise UserError(f'{url} downloaded {got} bytes, expected {size}: the file is not the expected one. It was '
                        'removed; run the command again.')
    if sha256 is not None:
        actual = sha256sum(part)
        if actual != sha256.lower():
            os.remove(part)
            raise UserError(f'{url} downloaded with SHA-256 {actual}, expected {sha256}: the file is corrupt or has '
                            'changed. It was removed; run the command again.')
    shutil.move(part, dest)
    return dest
