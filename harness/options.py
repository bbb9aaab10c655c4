"""What the commands take: the choices (enums) and each command's settings (dataclasses whose defaults are the
command's defaults).

Importable without torch, numpy or pandas, so that ``harness --help`` and ``--version`` answer at once; the modules
that do the work import their settings from here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from harness.challenge import FIRST_HIDDEN_SCENE, IMAGE_SIZE, MAX_SCENE, TRAIN_SCENES, VAL_SCENES
from harness.errors import HarnessError

FLAGSHIP = "flowcnrdb"
"""The registered name of the flagship model (what ``harness train`` trains by default)."""
MAX_VAL_SCENES = MAX_SCENE + 1 - VAL_SCENES.start
PUBLISHED_CROP = 256
"""The training crop of the published protocol."""


class Device(str, Enum):
    """Where a model runs: ``auto`` takes CUDA when available."""

    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class Precision(str, Enum):
    """The arithmetic of inference: ``fp32`` is IEEE float32 everywhere (on a GPU too, where PyTorch's default
    would run convolutions in TF32); ``tf32`` keeps float32 storage and runs convolutions and matrix products on
    TF32 tensor cores (GPUs only); ``bf16`` runs convolutions and matrix products in bfloat16; ``fp16`` is float16
    autocast (GPUs only)."""

    fp32 = "fp32"
    tf32 = "tf32"
    bf16 = "bf16"
    fp16 = "fp16"


class Split(str, Enum):
    """Which scenes of a folder a command takes."""

    train = "train"
    val = "val"
    all = "all"
    test = "test"

    @property
    def help(self) -> str:
        return {
            "train": f"scenes {TRAIN_SCENES.start:03d}-{TRAIN_SCENES.stop - 1:03d} (FlowCNRDB protocol)",
            "val": f"scenes {VAL_SCENES.start:03d}-{VAL_SCENES.stop - 1:03d}, held out (FlowCNRDB protocol)",
            "all": "every scene with ground truth",
            "test": "every scene present, ground truth optional",
        }[self.value]


class Quantize(str, Enum):
    """How a float output becomes 8-bit: ``floor`` matches the truncated ground truth, ``round`` is +0.5 LSB."""

    floor = "floor"
    round = "round"


class Format(str, Enum):
    onnx = "onnx"
    openvino = "openvino"


class CounterName(str, Enum):
    """The counters ``harness budget`` runs; ``meta_device`` ones count at full size without a real forward."""

    fvcore = "fvcore"
    ptflops_pytorch = "ptflops_pytorch"
    ptflops_aten = "ptflops_aten"
    flop_counter_mode = "flop_counter_mode"
    analytic = "analytic"

    @property
    def meta_device(self) -> bool:
        return self in (CounterName.ptflops_aten, CounterName.flop_counter_mode, CounterName.analytic)


COUNTERS = tuple(c.value for c in CounterName)


REPORT_COUNTERS = ("fvcore", *(c.value for c in CounterName if c.meta_device))
"""What a run report shows: the official counter and the fast meta-device ones."""


def default_run_dir(model: str, split: str) -> Path:
    """Where ``harness evaluate`` writes when no ``--out`` is given (any model source, made a folder name)."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", model.rsplit("/", 1)[-1]).strip("._") or "model"
    return Path("runs") / f"{name}-{split}"


@dataclass
class EvalConfig:
    """Arguments of ``harness evaluate``; the defaults are the command's."""

    model: str
    weights: Path | None = None
    data: Path | None = None  # None: the embedded synthetic dataset
    split: Split = Split.val
    scenes: str | None = None
    out: Path | None = None  # None: runs/MODEL-SPLIT
    device: Device = Device.auto
    precision: Precision = Precision.fp32
    tile: int = 0
    overlap: int = 0
    quantize: Quantize = Quantize.floor
    force: bool = False
    random_init: bool = False
    model_args: str | list[Any] | dict[str, Any] | None = None  # JSON text or parsed: see harness.sources
    trust_code: bool = False
    backend: str = "auto"  # harness.backends: auto takes fast for a FlowCNRDB variant on a CPU, else eager
    threads: int | None = None  # CPU threads during inference; None: torch's default for this process

    def __post_init__(self) -> None:
        if self.overlap and not self.tile:
            raise HarnessError("--overlap needs --tile (it is the overlap between tiles)")
        for name in ("weights", "data", "out"):
            if getattr(self, name) is not None:
                setattr(self, name, Path(getattr(self, name)))
        self.split, self.device, self.quantize = Split(self.split), Device(self.device), Quantize(self.quantize)
        self.precision = Precision(self.precision)

    @property
    def run_dir(self) -> Path:
        return self.out or default_run_dir(self.model, self.split.value)


@dataclass
class BenchConfig:
    model: str
    size: tuple[int, int] = IMAGE_SIZE
    device: Device = Device.auto
    threads: int | None = None  # None: torch's default
    warmup: int = 1
    repeats: int = 3
    model_args: str | None = None
    trust_code: bool = False
    weights: str | None = None  # None: harness.loading's policy, random weights where none are found
    precision: Precision = Precision.fp32
    backends: list[str] = field(default_factory=lambda: ["auto"])

    def __post_init__(self) -> None:
        self.precision = Precision(self.precision)


@dataclass
class TrainConfig:
    """Arguments of ``harness train``; the defaults are the published protocol."""

    model: str = FLAGSHIP
    data: Path | None = None  # None: the embedded synthetic dataset
    out: Path = Path("runs/train")
    iters: int = 224_000
    stop_after: int | None = None
    batch: int = 10
    crop: int | None = None  # None: PUBLISHED_CROP, or the largest the training scenes take
    lr: float = 3e-4
    min_lr: float = 1e-7
    weight_decay: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.999
    amp: bool | None = None  # None: on for CUDA, off on the CPU
    val_every: int = 2000
    val_crop: int = 256
    log_every: int = 100
    resume: bool = False
    device: Device = Device.auto
    seed: int = 0
    workers: int = 2
    train_scenes: str | None = None
    val_scenes: str | None = None
    model_args: str | None = None  # JSON: see harness.sources
    trust_code: bool = False
    micro_batch: int | None = None  # crops per forward/backward, gradients accumulated (None: the most that fit)
    memory_check: bool = True  # refuse a configuration whose estimate exceeds the free memory

    def __post_init__(self) -> None:
        self.data = Path(self.data) if self.data is not None else None
        self.out = Path(self.out)
        self.device = Device(self.device)


@dataclass(frozen=True)
class SynthConfig:
    """Arguments of ``harness data synth``; the defaults are the embedded dataset."""

    train_scenes: int = 32
    val_scenes: int = 8
    height: int = 256
    width: int = 512
    seed: int = 0
    max_shift: float = 2.0
    blur_prob: float = 0.3
    shot: float = 0.008
    read: float = 0.07
    margin: int = 8
    test_scenes: int = 0  # in OUT/test, numbered from 300, without ground truth: like the official inputs

    def test_numbers(self) -> list[int]:
        if not 0 <= self.test_scenes <= MAX_SCENE + 1 - FIRST_HIDDEN_SCENE:
            raise HarnessError(
                f"--test-scenes: 0 to {MAX_SCENE + 1 - FIRST_HIDDEN_SCENE} (test scenes are numbered from {FIRST_HIDDEN_SCENE})"
            )
        return list(range(FIRST_HIDDEN_SCENE, FIRST_HIDDEN_SCENE + self.test_scenes))

    def numbers(self) -> list[int]:
        if self.train_scenes < 0 or self.val_scenes < 0 or self.train_scenes + self.val_scenes == 0:
            raise HarnessError(
                f"--train-scenes and --val-scenes: at least one scene, none negative (got {self.train_scenes}, {self.val_scenes})"
            )
        if self.train_scenes > len(TRAIN_SCENES):
            raise HarnessError(
                f"--train-scenes: at most {len(TRAIN_SCENES)} (train scenes are {TRAIN_SCENES.start:03d}-{TRAIN_SCENES.stop - 1:03d})"
            )
        if self.val_scenes > MAX_VAL_SCENES:
            raise HarnessError(
                f"--val-scenes: at most {MAX_VAL_SCENES} (validation scenes start at {VAL_SCENES.start})"
            )
        start = VAL_SCENES.start
        return list(TRAIN_SCENES[: self.train_scenes]) + list(range(start, start + self.val_scenes))
