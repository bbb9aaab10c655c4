"""File I/O in one place: atomic writes, JSON/CSV, TIFFs and the ground truth.

Every file is written under a temporary name in its own folder and renamed
into place, and the temporary file is removed when anything fails, so an
interrupted command leaves either the old file or the new one, never half of
one. Every read error becomes one :class:`HarnessError` line naming the file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from math import prod
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import tifffile

from harness.challenge import IMAGE_HEIGHT, IMAGE_WIDTH, MAX_DECODE_BYTES, MAX_DECODE_PIXELS
from harness.errors import HarnessError, first_line
from harness.json_values import jsonable

# --------------------------------------------------------------------------- atomic writes


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success, remove it on failure."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(path: Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` and rename the result onto ``path``."""
    with atomic_path(path) as tmp:
        write(tmp)
    return path


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: Path, text: str) -> Path:
    """UTF-8; a character that cannot be encoded (an undecodable byte in a path, say) becomes '?', never an error."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8", errors="replace"))


@contextlib.contextmanager
def atomic_folder(path: Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; on success it replaces ``path``, on failure it is removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        tmp.rename(path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------- JSON and CSV


def write_json(path: Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(jsonable(obj), indent=2) + "\n")


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HarnessError(f"{path}: unreadable JSON ({first_line(exc)})") from None


def write_csv(path: Path, frame: pd.DataFrame) -> Path:
    return atomic_write_text(path, frame.to_csv(index=False, float_format="%.17g"))


def read_csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path)
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # pandas' parser errors are ValueErrors
        raise HarnessError(f"{path}: unreadable CSV ({first_line(exc)})") from None


def sha256_file(path: str | Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


# --------------------------------------------------------------------------- TIFFs


class UnreadableTiff(HarnessError):
    """A TIFF that tifffile cannot read; ``reason`` is the cause without the file name."""

    def __init__(self, path: Path, exc: BaseException) -> None:
        self.path = path
        self.reason = f"unreadable TIFF ({first_line(exc, 120)})"
        super().__init__(f"{path}: {self.reason}")


def tiff_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of the first image of a TIFF, read from its header only (nothing decoded)."""
    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            return tuple(page.shape), np.dtype(page.dtype)
    except Exception as exc:  # tifffile raises several types for damaged files
        raise UnreadableTiff(path, exc) from None


def read_tiff(path: Path, max_pixels: int = MAX_DECODE_PIXELS, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """The first image of a TIFF, decoded only after its header passed: no more than ``max_pixels``
    (H x W) and, when given, exactly ``shape``. A small file can declare gigabytes; it is refused unread."""
    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages.first
            _check_declared(path, tuple(page.shape), np.dtype(page.dtype), max_pixels, shape)
            _check_codec(path, tif)
            return page.asarray()
    except HarnessError:
        raise
    except Exception as exc:  # tifffile raises several types for damaged files
        raise UnreadableTiff(path, exc) from None


def _check_declared(
    path: Path, declared: tuple[int, ...], dtype: np.dtype, max_pixels: int, shape: tuple[int, ...] | None
) -> None:
    if shape is not None and declared != tuple(shape):
        raise HarnessError(f"{path}: declares shape {declared}, expected {tuple(shape)}")
    pixels = prod(declared[:2]) if len(declared) >= 2 else prod(declared)
    if pixels > max_pixels:
        raise HarnessError(
            f"{path}: declares {'x'.join(map(str, declared))}, more than the {max_pixels:,} pixels "
            "any image here may have (refused before decoding)"
        )
    if prod(declared) * dtype.itemsize > MAX_DECODE_BYTES:
        raise HarnessError(
            f"{path}: declares {'x'.join(map(str, declared))} {dtype} samples, more than the "
            f"{MAX_DECODE_BYTES / 2**20:.0f} MB any image here may take (refused before decoding)"
        )


BOUNDED_CODECS = {1: "none", 5: "LZW", 8: "deflate", 32946: "deflate", 32773: "PackBits"}
"""TIFF compressions whose decoders write no more than the strip the header declares."""
JPEG = 7  # its decoder sizes its output from each strip's own frame header: checked against the TIFF's first
SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(height, width) from a JPEG stream's frame header; None when it has none before its scan."""
    pos = 2 if data[:2] == b"\xff\xd8" else len(data)
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        if marker in SOF_MARKERS and pos + 9 <= len(data):
            return int.from_bytes(data[pos + 5 : pos + 7], "big"), int.from_bytes(data[pos + 7 : pos + 9], "big")
        if marker == 0xDA:
            return None
        pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
    return None


def _check_codec(path: Path, tif: tifffile.TiffFile) -> None:
    """Refuse a TIFF whose compressed strips would decode to more than its header declares: a codec that sizes
    its output from data inside each strip (JPEG) is checked strip by strip, one not known to be bounded refused."""
    page = tif.pages.first
    codec = int(page.compression)
    if codec in BOUNDED_CODECS:
        return
    if codec != JPEG:
        raise HarnessError(
            f"{path}: compression {tifffile.COMPRESSION(codec).name} is not one read here "
            f"({', '.join(sorted(set(BOUNDED_CODECS.values())))} or JPEG)"
        )
    height, width = (max(a, b) for a, b in zip(page.shape[:2], (page.tilelength or 0, page.tilewidth or 0)))
    for offset, count in zip(page.dataoffsets, page.databytecounts):
        tif.filehandle.seek(offset)
        size = _jpeg_size(tif.filehandle.read(min(count, 1 << 16)))
        if size is None or size[0] > height or size[1] > width:
            said = "no frame header" if size is None else f"a {size[0]}x{size[1]} frame"
            raise HarnessError(
                f"{path}: a JPEG strip holds {said} in a {page.shape[0]}x{page.shape[1]} image (refused before decoding)"
            )


def write_tiff(path: Path, image: np.ndarray, photometric: str) -> Path:
    """Atomic TIFF; tifffile stores the channels in the order given (RGB stays RGB)."""
    return atomic_write(path, lambda tmp: tifffile.imwrite(tmp, image, photometric=photometric))


def read_gt(path: Path, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Ground truth as stored: (H, W, 3) float32 RGB in [0, 1], the layout the scorer used; anything else is refused."""
    declared, dtype = tiff_header(path)
    if len(declared) != 3 or declared[-1] != 3:
        raise HarnessError(f"{path}: ground truth must be H x W x 3, got shape {declared}")
    if shape is not None and declared[:2] != tuple(shape):
        raise HarnessError(f"{path}: ground truth is {declared[0]}x{declared[1]}, expected {shape[0]}x{shape[1]}")
    if dtype.kind != "f":
        raise HarnessError(
            f"{path}: ground truth must be float in [0, 1], got {dtype} (an 8-bit GT would be scored wrongly)"
        )
    gt = np.ascontiguousarray(read_tiff(path), dtype=np.float32)
    if not np.isfinite(gt).all():
        raise HarnessError(f"{path}: ground truth holds {int((~np.isfinite(gt)).sum())} non-finite value(s)")
    lo, hi = float(gt.min()), float(gt.max())
    if lo < 0.0 or hi > 1.0:
        raise HarnessError(f"{path}: ground truth values outside [0, 1] (min {lo:.4g}, max {hi:.4g})")
    return gt


def output_header(
    path: Path, shape: tuple[int, int] | None = None, max_pixels: int = IMAGE_HEIGHT * IMAGE_WIDTH
) -> tuple[int, ...]:
    """The shape an output TIFF declares, refused unless uint8 H x W x 3 (of ``shape`` when given) and no larger
    than ``max_pixels`` (or ``shape``): nothing is decoded."""
    declared, dtype = tiff_header(path)
    if dtype != np.uint8:
        raise HarnessError(f"{path}: outputs must be 8-bit, got {dtype}")
    if len(declared) != 3 or declared[-1] != 3:
        raise HarnessError(f"{path}: outputs must be H x W x 3 RGB, got shape {declared}")
    if shape is not None and declared[:2] != tuple(shape):
        raise HarnessError(f"{path}: size {declared[0]}x{declared[1]}, expected {shape[0]}x{shape[1]}")
    limit = max(max_pixels, prod(shape) if shape else 0)
    if prod(declared[:2]) > limit:
        raise HarnessError(
            f"{path}: declares {'x'.join(map(str, declared))}, more than the {limit:,} pixels an output may have "
            "(refused before decoding)"
        )
    return declared


def read_output(
    path: Path, shape: tuple[int, int] | None = None, max_pixels: int = IMAGE_HEIGHT * IMAGE_WIDTH
) -> np.ndarray:
    """An output TIFF as uint8 H x W x 3 (of ``shape`` when given), checked from its header before decoding."""
    return read_tiff(path, max(max_pixels, prod(output_header(path, shape, max_pixels)[:2])))
