"""Reading zips from anyone, safely.

Every member is checked before anything is extracted (absolute paths, ``..``,
symlinks, too many members, too many bytes, suspicious compression ratios),
and extraction writes only regular files under the target folder.
"""

from __future__ import annotations

import shutil
import stat
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from harness.errors import HarnessError

MAX_MEMBERS = 2000
MAX_TOTAL_BYTES = 4 * 1024**3
MAX_RATIO = 200  # uncompressed / compressed; an 8-bit photo TIFF compresses far less


@dataclass
class ZipCheck:
    members: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def check_zip(path: Path, allowed_suffixes: tuple[str, ...] | None = (".tif",)) -> ZipCheck:
    """Refuse an unsafe zip before extraction; report members the server would ignore."""
    if not path.is_file():
        raise HarnessError(f"{path}: no such zip")
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise HarnessError(f"{path}: not a zip ({exc})") from None
    check = ZipCheck()
    with zf:
        infos = zf.infolist()
        if len(infos) > MAX_MEMBERS:
            raise HarnessError(f"{path}: {len(infos)} members, more than the limit of {MAX_MEMBERS} (zip bomb?)")
        total = 0
        for info in infos:
            name = info.filename
            pure = PurePosixPath(name.replace("\\", "/"))
            if pure.is_absolute() or (len(name) > 1 and name[1] == ":"):
                raise HarnessError(f"{path}: member {name!r} has an absolute path (refused)")
            if ".." in pure.parts:
                raise HarnessError(f"{path}: member {name!r} escapes the folder with '..' (zip-slip, refused)")
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise HarnessError(f"{path}: member {name!r} is a symbolic link (refused)")
            total += info.file_size
            if total > MAX_TOTAL_BYTES:
                raise HarnessError(f"{path}: uncompressed size over {MAX_TOTAL_BYTES // 1024**3} GiB (zip bomb?)")
            if info.compress_size and info.file_size / info.compress_size > MAX_RATIO and info.file_size > 1024**2:
                raise HarnessError(f"{path}: member {name!r} expands {info.file_size / info.compress_size:.0f}x (zip bomb?)")
            if info.is_dir():
                continue
            if allowed_suffixes and not name.lower().endswith(allowed_suffixes):
                check.notes.append(f"{name}: not a TIFF; the server ignores it")
            check.members.append(name)
    return check


def safe_extract(path: Path, target: Path, allowed_suffixes: tuple[str, ...] | None = (".tif",)) -> ZipCheck:
    """Check, then extract regular files only, each verified to land inside ``target``."""
    check = check_zip(path, allowed_suffixes)
    root = target.resolve()
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            dest = (root / info.filename).resolve()
            if root not in dest.parents and dest != root:
                raise HarnessError(f"{path}: member {info.filename!r} would land outside the folder (refused)")
            if info.is_dir():
                dest.mkdir(parents=True, exist_ok=True)
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(dest, "wb") as dst:
                shutil.copyfileobj(src, dst)
    return check
