"""Deterministic zips: members sorted, fixed timestamps (1980-01-01) and permissions
(0644), deflate, so the same files always give the same bytes. Reading a zip
from anyone is :mod:`harness.archive`'s (re-exported here).
"""

from __future__ import annotations

import stat
import zipfile
from pathlib import Path

from harness.archive import ZipCheck, check_zip, safe_extract
from harness.io import atomic_path

__all__ = ["FIXED_DATE", "ZipCheck", "check_zip", "safe_extract", "write_zip"]

FIXED_DATE = (1980, 1, 1, 0, 0, 0)


def write_zip(files: dict[str, Path | bytes], out: Path) -> Path:
    """Write ``{name in zip: file or bytes}`` deterministically and atomically."""
    with atomic_path(out) as tmp, zipfile.ZipFile(tmp, "w") as zf:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=FIXED_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (stat.S_IFREG | 0o644) << 16
            info.create_system = 3
            src = files[name]
            zf.writestr(info, src if isinstance(src, bytes) else src.read_bytes(), compresslevel=9)
    return out
