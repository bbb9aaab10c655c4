"""Reading zips from anyone, safely.

Every member is checked before anything is extracted (absolute paths, ``..``,
symlinks, too many members, too many bytes, suspicious compression ratios),
and extraction writes only regular files under the target folder.
"""

from __future__ import annotations

import stat
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from harness.errors import HarnessError, first_line

MAX_MEMBERS = 2000
MAX_TOTAL_BYTES = 4 * 1024**3
MAX_RATIO = 200  # uncompressed / compressed; an 8-bit photo TIFF compresses far less


@dataclass
class ZipCheck:
    members: list[str] = field(default_factory=list)  # the members extracted
    notes: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)  # every member, as the server's unzip would write them

    @property
    def top(self) -> list[str]:
        """The entries the server sees at the top of the extracted folder (folders and files alike)."""
        return sorted({n.replace("\\", "/").split("/")[0] for n in self.names if n.strip("/")})

    def server_folder(self, root: Path) -> Path:
        """Where the server reads the outputs once the zip is extracted into ``root``: into the only entry at the top
        when every member lies under it (decided from every member, not only those extracted), else ``root``."""
        top = self.top
        descends = len(top) == 1 and all(n.replace("\\", "/").startswith(top[0] + "/") for n in self.names)
        folder = root / top[0] if descends else root
        folder.mkdir(exist_ok=True)  # the folder it looks into, even when none of its members was extracted
        return folder


MIN_RATIO_CHECKED = 64 * 1024  # below this, a high ratio is a tiny text file, not a bomb


def _check_member(path: Path, info: zipfile.ZipInfo) -> None:
    name = info.filename
    pure = PurePosixPath(name.replace("\\", "/"))
    if pure.is_absolute() or (len(name) > 1 and name[1] == ":"):
        raise HarnessError(f"{path}: member {name!r} has an absolute path (refused)")
    if ".." in pure.parts:
        raise HarnessError(f"{path}: member {name!r} escapes the folder with '..' (zip-slip, refused)")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise HarnessError(f"{path}: member {name!r} is a symbolic link (refused)")
    if info.flag_bits & 0x1:
        raise HarnessError(f"{path}: member {name!r} is encrypted (refused)")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA):
        raise HarnessError(f"{path}: member {name!r} uses an unknown compression method ({info.compress_type})")
    if info.file_size > MIN_RATIO_CHECKED and info.file_size > MAX_RATIO * max(info.compress_size, 1):
        raise HarnessError(
            f"{path}: member {name!r} expands {info.file_size / max(info.compress_size, 1):.0f}x (zip bomb?)"
        )


def check_zip(path: Path, allowed_suffixes: tuple[str, ...] | None = (".tif",)) -> ZipCheck:
    """Refuse an unsafe zip before extraction; note members the server would ignore (never extracted) and duplicates.
    The size limits count every member, the ignored ones too."""
    if not path.is_file():
        raise HarnessError(f"{path}: no such zip")
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise HarnessError(f"{path}: not a zip ({exc})") from None
    except UnicodeDecodeError as exc:  # a name flagged UTF-8 that is not
        raise HarnessError(f"{path}: member {bytes(exc.object)!r} is flagged UTF-8 but its name is not") from None
    check = ZipCheck()
    with zf:
        infos = zf.infolist()
        if len(infos) > MAX_MEMBERS:
            raise HarnessError(f"{path}: {len(infos)} members, more than the limit of {MAX_MEMBERS} (zip bomb?)")
        if sum(i.file_size for i in infos) > MAX_TOTAL_BYTES:
            raise HarnessError(f"{path}: uncompressed size over {MAX_TOTAL_BYTES // 1024**3} GiB (zip bomb?)")
        seen: set[str] = set()
        for info in infos:
            _check_member(path, info)
            check.names.append(info.filename)
            if info.filename in seen:
                check.notes.append(f"{info.filename}: appears more than once; the last copy is the one read")
            seen.add(info.filename)
            if info.is_dir():
                continue
            if allowed_suffixes and not info.filename.lower().endswith(allowed_suffixes):
                check.notes.append(f"{info.filename}: not a TIFF; the server ignores it (not extracted)")
                continue
            check.members.append(info.filename)
    return check


def _copy_bounded(zf: zipfile.ZipFile, info: zipfile.ZipInfo, dest: Path) -> None:
    """Copy one member, never writing more than its header declares (a lying header fails here)."""
    left = info.file_size
    with zf.open(info) as src, open(dest, "wb") as dst:
        while chunk := src.read(min(1 << 20, left + 1)):
            left -= len(chunk)
            if left < 0:
                raise HarnessError(
                    f"member {info.filename!r} holds more than its declared {info.file_size} bytes (refused)"
                )
            dst.write(chunk)


def safe_extract(path: Path, target: Path, allowed_suffixes: tuple[str, ...] | None = (".tif",)) -> ZipCheck:
    """Check, then extract the members that matter (regular files only), each verified to land inside ``target``."""
    check = check_zip(path, allowed_suffixes)
    wanted = set(check.members)
    root = target.resolve()
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            if info.is_dir() or info.filename not in wanted:
                continue
            dest = (root / info.filename).resolve()
            if root not in dest.parents:
                raise HarnessError(f"{path}: member {info.filename!r} would land outside the folder (refused)")
            try:
                dest.parent.mkdir(parents=True, exist_ok=True)
                _copy_bounded(zf, info, dest)
            except HarnessError as exc:
                raise HarnessError(f"{path}: {exc}") from None
            except (zipfile.BadZipFile, OSError, EOFError, zlib.error, RuntimeError, NotImplementedError) as exc:
                raise HarnessError(
                    f"{path}: member {info.filename!r} cannot be extracted ({first_line(exc, 160)})"
                ) from None
    return check
