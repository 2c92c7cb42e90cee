"""Resumable, verified extraction of image archives (zip, tar) as the dataset recipes ship them."""
import os
import tarfile
import zipfile
from os import path as osp

from tqdm import tqdm

from srdistill.utils.errors import UserError


def _open(archive):
    try:
        if zipfile.is_zipfile(archive):
            zf = zipfile.ZipFile(archive)
            return {m.filename: m for m in zf.infolist() if not m.is_dir()}, zf.open, zf
        tf = tarfile.open(archive)
        return {m.name: m for m in tf.getmembers() if m.isfile()}, tf.extractfile, tf
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError) as err:
        reason = str(err).splitlines()[0].rstrip(':')
        raise UserError(f'{archive} is not a readable zip or tar archive ({reason}); it may be truncated: delete it '
                        'and run the command again.') from None


def extract(archive, wanted, show_progress=True):
    """Extract the members ``wanted`` (member name -> destination file) of a zip or tar archive.

    A destination that already exists with the member's size is skipped, so an interrupted extraction resumes; each
    file is written under a temporary name and renamed. Zip members are CRC-checked as they are read.

    Args:
        archive (str): The ``.zip`` / ``.tar`` / ``.tar.gz`` file.
        wanted (dict[str, str]): Member name -> destination path.
        show_progress (bool): Progress bar. Default: True.

    Returns:
        int: Files written.

    Raises:
        UserError: Unreadable archive, missing members (listed) or a corrupt member.
    """
    members, open_member, handle = _open(archive)
    with handle:
        missing = sorted(set(wanted) - set(members))
        if missing:
            shown = ', '.join(missing[:5]) + (f' ... ({len(missing)} in all)' if len(missing) > 5 else '')
            raise UserError(f'{archive} lacks {shown}: it is not the expected archive, or it is incomplete. Delete it '
                            'and run the command again.')
        written = 0
        for name in tqdm(sorted(wanted), unit='file', desc=f'Unpacking {osp.basename(archive)}',
                         disable=not show_progress):
            dest, member = wanted[name], members[name]
            size = member.file_size if isinstance(member, zipfile.ZipInfo) else member.size
            if osp.exists(dest) and osp.getsize(dest) == size:
                continue
            os.makedirs(osp.dirname(dest), exist_ok=True)
            tmp = f'{dest}.partial{os.getpid()}'
            try:
                with open_member(member) as src, open(tmp, 'wb') as out:
                    for block in iter(lambda: src.read(1 << 20), b''):
                        out.write(block)
            except (zipfile.BadZipFile, tarfile.TarError, OSError, EOFError) as err:
                if osp.exists(tmp):
                    os.remove(tmp)
                raise UserError(f'{archive}: member {name} is corrupt ({err}). Delete the archive and run the command '
                                'again.') from None
            os.replace(tmp, dest)
            written += 1
    return written


def member_names(archive):
    """Names of the file members of a zip or tar archive."""
    members, _, handle = _open(archive)
    with handle:
        return sorted(members)
