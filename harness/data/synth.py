"""A synthetic dataset in the RawFusion layout, made from real photographs.

The photographs are the colour images that ship with scikit-image
(``skimage.data``), so a fresh machine can run everything with no download.

Forward model, per scene (all randomness from ``numpy.random.default_rng`` seeded
by (seed, scene number), so the same arguments give byte-identical files):

1. Ground truth. A photograph is chosen (scene number modulo the list), a
   random crop of aspect H:W is cut, flipped left-right and/or up-down at
   random, and resized (anti-aliased) to (H + 2m) x (W + 2m) with a margin m.
   It is linearised (sRGB decoding, ``x ** 2.2``) and scaled by a random
   brightness in [0.6, 1.0]. The centre H x W crop is the ground truth: linear
   RGB in [0, 1], written as an H x W x 3 float32 TIFF.
2. Frames i = 0..8, in three exposure groups: short (0-2), mid (3-5) and long
   (6-8) with exposure ratios 1, 2 and 4 (per frame in ``dataset.json``).
   Frame 0 is the reference: no shift, no blur, aligned with the ground truth.
   Every other frame gets a global sub-pixel translation (dx, dy) uniform in
   [-max_shift, max_shift] (bilinear resampling of the canvas) and, with
   probability ``blur_prob``, a short linear motion blur (length 3-5 pixels,
   random angle).
3. The frame's linear RGB times its exposure ratio is mosaicked GRBG (row 0:
   G R G R ..., row 1: B G B G ...).
4. Poisson-Gaussian noise: a signal s gets a normal deviate of variance
   ``shot * s + read**2`` (the Gaussian approximation of shot noise plus read
   noise), so the noise relative to the signal falls as the exposure grows.
   Values are not clipped (they can be negative or exceed 1), as in the
   challenge data. Frames are written as H x W float32 TIFFs.

``dataset.json`` records the generator version, the seed, the arguments and,
per scene, the source photograph, crop, flips, brightness and for every frame
its exposure ratio, shift, blur and noise levels.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from harness.challenge import (
    EXPOSURE_GROUPS,
    MAX_DECODE_PIXELS,
    NUM_FRAMES,
    SIZE_MULTIPLE,
    scene_id,
)
from harness.errors import HarnessError
from harness.io import atomic_folder, atomic_write_text, read_json, write_tiff
from harness.options import SynthConfig
from harness.progress import Progress, notify

GENERATOR_VERSION = "harness-synth-1"
PHOTOS = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "immunohistochemistry",
    "stereo_motorcycle",
    "retina",
    "hubble_deep_field",
)
GROUP_EXPOSURE = {"short": 1.0, "mid": 2.0, "long": 4.0}
EXPOSURES = tuple(GROUP_EXPOSURE[g] for i in range(NUM_FRAMES) for g, idx in EXPOSURE_GROUPS.items() if i in idx)


@dataclass
class FrameParams:
    exposure: float
    shift: tuple[float, float]
    blur_length: int
    blur_angle: float
    shot: float
    read: float


@dataclass
class SceneParams:
    scene: int
    photo: str
    crop: tuple[int, int, int, int]
    flip_lr: bool
    flip_ud: bool
    brightness: float
    frames: list[FrameParams] = field(default_factory=list)


def _photo(name: str) -> np.ndarray:
    import skimage.data

    img = getattr(skimage.data, name)()
    if isinstance(img, tuple):  # stereo pairs: the left view
        img = img[0]
    return img[..., :3]


def _motion_kernel(length: int, angle: float) -> np.ndarray:
    """A normalised line kernel of ``length`` pixels at ``angle`` degrees."""
    size = length if length % 2 else length + 1
    k = np.zeros((size, size), np.float64)
    c = size // 2
    t = np.linspace(-(length - 1) / 2, (length - 1) / 2, 4 * length)
    rad = np.deg2rad(angle)
    for x, y in zip(c + t * np.cos(rad), c + t * np.sin(rad)):
        k[int(round(y)), int(round(x))] += 1.0
    return k / k.sum()


def mosaic_grbg(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) -> (H, W) GRBG mosaic: G at (0,0) and (1,1), R at (0,1), B at (1,0)."""
    out = rgb[..., 1].copy()
    out[0::2, 1::2] = rgb[0::2, 1::2, 0]
    out[1::2, 0::2] = rgb[1::2, 0::2, 2]
    return out


def _scene_params(cfg: SynthConfig, number: int, rng: np.random.Generator, photo: np.ndarray, name: str) -> SceneParams:
    ph, pw = photo.shape[:2]
    aspect = cfg.width / cfg.height
    ch = int(rng.integers(int(0.6 * min(ph, pw / aspect)), int(min(ph, pw / aspect)) + 1))
    cw = min(pw, int(round(ch * aspect)))
    y0 = int(rng.integers(0, ph - ch + 1))
    x0 = int(rng.integers(0, pw - cw + 1))
    params = SceneParams(
        scene=number,
        photo=name,
        crop=(y0, x0, ch, cw),
        flip_lr=bool(rng.random() < 0.5),
        flip_ud=bool(rng.random() < 0.25),
        brightness=float(rng.uniform(0.6, 1.0)),
    )
    for i, exposure in enumerate(EXPOSURES):
        shift = (0.0, 0.0) if i == 0 else tuple(float(v) for v in rng.uniform(-cfg.max_shift, cfg.max_shift, 2))
        blur = 0 if i == 0 or rng.random() >= cfg.blur_prob else int(rng.integers(3, 6))
        angle = float(rng.uniform(0, 180)) if blur else 0.0
        params.frames.append(FrameParams(exposure, shift, blur, angle, cfg.shot, cfg.read))  # type: ignore[arg-type]
    return params


def make_scene(
    cfg: SynthConfig, number: int, photos: dict[str, np.ndarray]
) -> tuple[np.ndarray, np.ndarray, SceneParams]:
    """Frames (9, H, W) float32, GT (H, W, 3) float32 and the parameters of one scene."""
    from skimage.transform import resize

    rng = np.random.default_rng([cfg.seed, number])
    name = PHOTOS[number % len(PHOTOS)]
    photo = photos[name]
    p = _scene_params(cfg, number, rng, photo, name)
    y0, x0, ch, cw = p.crop
    crop = photo[y0 : y0 + ch, x0 : x0 + cw]
    if p.flip_lr:
        crop = crop[:, ::-1]
    if p.flip_ud:
        crop = crop[::-1]
    m = cfg.margin
    canvas = resize(crop, (cfg.height + 2 * m, cfg.width + 2 * m, 3), order=1, anti_aliasing=True)
    canvas = np.clip(canvas, 0.0, 1.0) ** 2.2 * p.brightness
    gt = canvas[m : m + cfg.height, m : m + cfg.width]
    frames = np.empty((NUM_FRAMES, cfg.height, cfg.width), np.float32)
    for i, fp in enumerate(p.frames):
        img = canvas
        if fp.blur_length:
            kernel = _motion_kernel(fp.blur_length, fp.blur_angle)
            img = np.stack([ndimage.convolve(img[..., c], kernel, mode="nearest") for c in range(3)], axis=-1)
        if fp.shift != (0.0, 0.0):
            dx, dy = fp.shift
            img = ndimage.shift(img, (dy, dx, 0), order=1, mode="nearest")
        signal = mosaic_grbg(img[m : m + cfg.height, m : m + cfg.width]) * fp.exposure
        sigma = np.sqrt(fp.shot * np.maximum(signal, 0.0) + fp.read**2)
        frames[i] = (signal + sigma * rng.standard_normal(signal.shape)).astype(np.float32)
    return frames, gt.astype(np.float32), p


def synthesize(
    out: str | Path, cfg: SynthConfig = SynthConfig(), force: bool = False, progress: Progress | None = None
) -> Path:
    """Write the dataset to ``out`` (built in a temporary folder, then renamed)."""
    out = Path(out)
    if cfg.height * cfg.width > MAX_DECODE_PIXELS:
        raise HarnessError(
            f"--size: {cfg.height}x{cfg.width} has more than the {MAX_DECODE_PIXELS:,} pixels any image here may have"
        )
    if cfg.height % SIZE_MULTIPLE or cfg.width % SIZE_MULTIPLE or cfg.height <= 0 or cfg.width <= 0:
        raise HarnessError(
            f"--size: H and W must be positive multiples of {SIZE_MULTIPLE}, got {cfg.height}x{cfg.width}"
        )
    numbers = cfg.numbers()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if read_metadata(out) is None:  # --force replaces only what this generator wrote
            raise HarnessError(
                f"{out}: exists, is not empty and is not a dataset this generator wrote; choose another folder"
            )
        if not force:
            raise HarnessError(f"{out}: holds a synthetic dataset (pass --force to replace it)")
    cfg.test_numbers()
    with atomic_folder(out) as tmp:
        photos = {name: _photo(name) for name in PHOTOS}
        total = len(numbers) + cfg.test_scenes
        _write_scenes(tmp, cfg, numbers, photos, True, lambda k, stem: notify(progress, k, total, stem))
        if cfg.test_scenes:
            _write_scenes(
                tmp / "test",
                cfg,
                cfg.test_numbers(),
                photos,
                False,
                lambda k, stem: notify(progress, len(numbers) + k, total, stem),
            )
    return out


def _write_scenes(
    folder: Path, cfg: SynthConfig, numbers: list[int], photos: dict[str, np.ndarray], with_gt: bool, progress: Any
) -> None:
    """Frames (and ground truth) of ``numbers`` into ``folder``, with the dataset.json that describes them."""
    folder.mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = {"generator": GENERATOR_VERSION, "seed": cfg.seed, "config": asdict(cfg), "scenes": {}}
    for k, number in enumerate(numbers):
        frames, gt, params = make_scene(cfg, number, photos)
        stem = scene_id(number)
        for i in range(NUM_FRAMES):
            write_tiff(folder / f"{stem}-in-{i}.tif", frames[i], "minisblack")
        if with_gt:
            write_tiff(folder / f"{stem}-gt.tif", gt, "rgb")
        meta["scenes"][stem] = asdict(params)
        progress(k + 1, stem)
    atomic_write_text(folder / "dataset.json", json.dumps(meta, indent=1, sort_keys=True) + "\n")


def read_metadata(folder: str | Path) -> dict[str, Any] | None:
    """``dataset.json`` of a synthetic folder, or None for other data."""
    path = Path(folder) / "dataset.json"
    if not path.is_file():
        return None
    try:
        meta = read_json(path)
    except HarnessError:
        return None  # not ours: treated as data without metadata
    return meta if isinstance(meta, dict) and meta.get("generator") == GENERATOR_VERSION else None


def frame0_exposure(folder: str | Path) -> float | None:
    """The exposure ratio of frame 0, when it is one number for the whole folder."""
    meta = read_metadata(folder)
    if not meta:
        return None
    try:
        values = {float(s["frames"][0]["exposure"]) for s in meta["scenes"].values()}
    except (KeyError, TypeError, ValueError, IndexError, AttributeError):
        return None
    return values.pop() if len(values) == 1 else None
