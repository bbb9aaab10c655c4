"""The challenge's facts, each named once, with where it comes from.

Sources: the NTIRE 2025 Efficient Burst HDR and Restoration starter kit and its
Codalab scoring program (data layout, scorer, limits), and the FlowCNRDB
factsheet (the 280/20 split). Every other module takes these from here.
"""

from __future__ import annotations

from harness.errors import HarnessError

# --------------------------------------------------------------------------- data layout (starter kit)

NUM_FRAMES = 9
"""Frames per burst: ``Scene-XXX-in-0.tif`` ... ``Scene-XXX-in-8.tif``."""

EXPOSURE_GROUPS: dict[str, tuple[int, ...]] = {"short": (0, 1, 2), "mid": (3, 4, 5), "long": (6, 7, 8)}
"""Frames 0-2 short (noisiest), 3-5 middle, 6-8 long; frame 0 is the reference, aligned with the GT."""

BAYER_PATTERN = "GRBG"
"""Row 0: G R G R ..., row 1: B G B G ..."""

IMAGE_HEIGHT, IMAGE_WIDTH = 768, 1536
"""Every challenge image is 768 (H) x 1536 (W); the limits are defined at this size."""

IMAGE_SIZE = (IMAGE_HEIGHT, IMAGE_WIDTH)

MAX_SIDE_FACTOR = 2
"""Data of this layout may be up to 2x the challenge's size per side (synthetic data, larger sensors), no more:
every command then stays within 1.5 GB beyond what the model itself needs at the challenge size."""

MAX_DECODE_PIXELS = MAX_SIDE_FACTOR**2 * IMAGE_HEIGHT * IMAGE_WIDTH
"""No image with more pixels is ever decoded: a TIFF declaring more is refused from its header (4.7 M pixels)."""

MAX_DECODE_BYTES = MAX_DECODE_PIXELS * 3 * 4
"""Nor one whose decoded samples take more (an RGB float32 image of MAX_DECODE_PIXELS: 57 MB), whatever its
samples per pixel."""

MAX_CHECKPOINT_BYTES = 2**30
"""A checkpoint holds at most 1 GiB of tensors, decided from its zip directory (or its size) before anything is
read: a model within the 30 M parameter limit is 120 MB in float32, 480 MB with a training state's moments."""

MAX_DEMO_BYTES = 256 * 2**10
"""A code submission's ``test_demo.py`` is parsed (never run) only up to 256 KiB; the starter kit's is about 5 KB."""

SIZE_MULTIPLE = 32
"""H and W of data checked by ``harness data check`` (the flagship model's multiple, and 768x1536's)."""

SCENE_DIGITS = 3
"""Scene numbers are zero-padded to three digits: 000-999."""

MAX_SCENE = 10**SCENE_DIGITS - 1

# --------------------------------------------------------------------------- splits (FlowCNRDB factsheet)

TRAIN_SCENES = range(0, 280)
"""Scenes 000-279 train (FlowCNRDB protocol)."""

VAL_SCENES = range(280, 300)
"""Scenes 280-299 of the public training set validate (held out)."""

FIRST_HIDDEN_SCENE = 300
"""The official validation and test inputs carry numbers from 300 up and no ground truth."""

# --------------------------------------------------------------------------- scorer (Codalab scoring program)

GT_SCALE = 255
"""Ground truth quantised as ``uint8(clip(gt * 255, 0, 255))``: truncation, in the stored float32."""

SERVER_SSIM_DATA_RANGE = 2.0
"""The server's SSIM: scikit-image before 0.20 used the float dtype range (-1, 1) for float input."""

STANDARD_SSIM_DATA_RANGE = 1.0
"""The textbook SSIM data range for images in [0, 1]."""

SSIM_WINDOW = 7
"""scikit-image's default uniform window."""

CROSS_CHECK_TOL = 1e-6
"""Our independent torch re-implementation must agree with scikit-image to this (not the server's)."""

# --------------------------------------------------------------------------- efficiency limits (starter kit)

PARAM_LIMIT = 30.0e6
"""Parameters < 30.0 M (``sum(p.numel())``, reported as numel / 1000^2)."""

MAC_LIMIT = 4.0e12
"""fvcore ``FlopCountAnalysis`` total < 4.0 T at 1 x 9 x 768 x 1536 (fvcore's 'flop' is one MAC)."""

# --------------------------------------------------------------------------- reference results (published)

REFERENCE_PSNR: tuple[tuple[str, float], ...] = (
    ("starter-kit U-Net baseline (validation)", 31.01),
    ("FlowCNRDB, test", 41.38),
    ("FlowCNRDB, dev", 41.74),
    ("winner RASD, test", 43.22),
)


def split_of(number: int) -> str:
    """The split a scene number belongs to: ``train``, ``val`` or ``other`` (official inputs)."""
    if number in TRAIN_SCENES:
        return "train"
    if number in VAL_SCENES:
        return "val"
    return "other"


def scene_id(number: int) -> str:
    """``Scene-XXX``."""
    return f"Scene-{number:0{SCENE_DIGITS}d}"


def parse_size(text: str) -> tuple[int, int]:
    """``"768x1536"`` -> (768, 1536); each side positive and at most MAX_SIDE_FACTOR times the challenge's."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise HarnessError(f"--size: expected HxW such as {IMAGE_HEIGHT}x{IMAGE_WIDTH}, got {text!r}") from None
    most = (MAX_SIDE_FACTOR * IMAGE_HEIGHT, MAX_SIDE_FACTOR * IMAGE_WIDTH)
    if not (0 < h <= most[0] and 0 < w <= most[1]):
        raise HarnessError(
            f"--size: {h}x{w} is outside 1x1..{most[0]}x{most[1]} ({MAX_SIDE_FACTOR}x the challenge's size per side)"
        )
    return h, w
