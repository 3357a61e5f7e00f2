"""Safe extraction of a zip archive into a new folder.

:func:`extract_archive` checks every member name before writing anything (absolute
paths, drive letters, ``..`` components, symlinks and special files are refused, naming
the archive and the member), writes into ``DIR/.FOLDER.partial`` and renames that to
``DIR/FOLDER`` only when complete. A single top-level folder in an archive
(``FSDKaggle2019.audio_test/``) is stripped.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
from collections.abc import Sequence

from fat_tf.data.fetch.archives import ArchiveError, ArchiveMember, SplitZipArchive, ZipArchive
from fat_tf.data.fetch.progress import Progress, ProgressSettings
from fat_tf.data.fetch.transfer import check_free_space

_DRIVE = re.compile(r"^[A-Za-z]:")


def check_member_name(archive: str, member: ArchiveMember) -> tuple[str, ...]:
    """Check that a member is safe to extract; return its path components.

    Args:
        archive: the archive's name, for messages.
        member: the entry.

    Returns:
        The name split on ``/`` (and ``\\``), without empty and ``.`` parts.

    Raises:
        ArchiveError: an absolute path, a drive letter, a ``..`` component, a NUL byte, a
            symbolic link or a special file, naming the archive and the member.
    """
    where = f"{archive}: unsafe member {member.name!r}"
    name = member.name.replace("\\", "/")
    if "\x00" in name:
        raise ArchiveError(f"{where}: the name contains a NUL byte; nothing was extracted")
    if name.startswith("/"):
        raise ArchiveError(f"{where}: absolute path; nothing was extracted")
    if _DRIVE.match(name):
        raise ArchiveError(f"{where}: the name has a drive letter; nothing was extracted")
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        raise ArchiveError(f"{where}: a '..' component leads outside; nothing was extracted")
    if stat.S_ISLNK(member.mode):
        raise ArchiveError(f"{where}: symbolic links are not extracted; nothing was extracted")
    kind = stat.S_IFMT(member.mode)
    if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
        raise ArchiveError(f"{where}: special file (mode {member.mode:o}); nothing was extracted")
    return parts


def plan_extraction(
    archive: str, members: Sequence[ArchiveMember], select: str | None = None
) -> list[tuple[ArchiveMember, tuple[str, ...]]]:
    """Check every member and decide where each one goes, before anything is written.

    Args:
        archive: the archive's name, for messages.
        members: its entries.
        select: keep only members under this folder (``"train_curated"``) and strip it;
            ``None`` keeps all and strips a single top-level folder, if there is one.

    Returns:
        ``(member, relative path parts)`` for each member to extract (``__MACOSX/`` left out).

    Raises:
        ArchiveError: an unsafe member (see :func:`check_member_name`).
    """
    checked = [(m, check_member_name(archive, m)) for m in members]
    checked = [(m, p) for m, p in checked if p and p[0] != "__MACOSX"]
    if select is not None:
        prefix = tuple(p for p in select.split("/") if p)
        n = len(prefix)
        checked = [(m, p[n:]) for m, p in checked if p[:n] == prefix]
    else:
        checked = _strip_top_folder(checked)
    return [(m, p) for m, p in checked if p]


def _strip_top_folder(checked):
    tops = {p[0] for _, p in checked}
    only_in_folder = all(len(p) > 1 or m.is_dir for m, p in checked)
    if len(tops) == 1 and only_in_folder:
        return [(m, p[1:]) for m, p in checked]
    return checked


def extract_archive(
    archive: ZipArchive | SplitZipArchive,
    dest_dir: str | os.PathLike,
    options: ProgressSettings,
    select: str | None = None,
) -> int:
    """Extract safely into ``dest_dir`` (which must not exist) via a temporary folder.

    All names are checked first; files go to ``.NAME.partial`` beside ``dest_dir``, which
    is renamed to ``dest_dir`` only when every member was written and verified.

    Args:
        archive: the archive.
        dest_dir: the folder to create.
        options: where the extraction progress goes.
        select: see :func:`plan_extraction`.

    Returns:
        The number of files extracted.

    Raises:
        ArchiveError: an unsafe or corrupt member, or nothing to extract.
        DownloadError: not enough free disk space for the extracted files.
    """
    dest_dir = os.path.abspath(os.fspath(dest_dir))
    plan = plan_extraction(archive.name, archive.members(), select)
    files = [(m, p) for m, p in plan if not m.is_dir]
    if not files:
        under = f" under {select}/" if select else ""
        raise ArchiveError(f"{archive.path}: no files to extract{under}")
    tmp = os.path.join(os.path.dirname(dest_dir), f".{os.path.basename(dest_dir)}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    check_free_space(os.path.dirname(dest_dir), sum(m.size for m, _ in files), archive.name)
    os.makedirs(tmp)
    try:
        progress = Progress(f"extracting {archive.name}", sum(m.size for m, _ in files), options)
        try:
            for member, parts in plan:
                _extract_member(archive, member, tmp, parts, progress)
        finally:
            progress.close()
        os.rename(tmp, dest_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return len(files)


def _extract_member(archive, member: ArchiveMember, root: str, parts, progress: Progress) -> None:
    path = os.path.join(root, *parts)
    try:
        if member.is_dir:
            os.makedirs(path, exist_ok=True)
            return
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "xb") as f:
            for chunk in archive.chunks(member):
                f.write(chunk)
                progress.update(len(chunk))
    except FileExistsError:
        raise ArchiveError(f"{archive.path}: member {member.name!r} appears twice") from None
    except OSError as e:
        raise ArchiveError(
            f"{archive.path}: cannot extract member {member.name!r} ({e.strerror or e})"
        ) from None
