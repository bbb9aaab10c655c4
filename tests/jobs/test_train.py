"""Training: Bayer-preserving augmentation, group shuffling, schedule, exact resume, DDP."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from harness import create_model, load_checkpoint
from harness.cli import app
from harness.train.augment import bayer_crop, colour_map, shuffle_order
from harness.train.loop import cosine_lr

runner = CliRunner()


def test_augmentation_keeps_grbg_and_frames_aligned_with_gt():
    h, w, size = 40, 52, 16
    codes = colour_map(h, w).astype(np.float32)  # what colour each site holds
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    frames = np.stack([codes, ys, xs] + [codes] * 6)  # frame 1 and 2 carry the position
    gt = np.stack([ys, xs, codes])
    rng = np.random.default_rng(0)
    for k in range(8):
        for _ in range(5):
            y = 2 * int(rng.integers(0, (h - size - 2) // 2 + 1))
            x = 2 * int(rng.integers(0, (w - size - 2) // 2 + 1))
            f, g = bayer_crop(frames, gt, y, x, size, k)
            assert f.shape == (9, size, size) and g.shape == (3, size, size)
            assert np.array_equal(f[0], colour_map(size, size)), f"transform {k} broke the GRBG phase"
            assert np.array_equal(f[1], g[0]) and np.array_equal(f[2], g[1]), "frames and GT moved apart"
    seen = {tuple(bayer_crop(frames, gt, 0, 0, size, k)[0][1:3, 0, :2].ravel()) for k in range(8)}
    assert len(seen) == 8  # eight distinct transforms


def test_odd_crop_origin_refused():
    with pytest.raises(ValueError):
        bayer_crop(np.zeros((9, 20, 20)), np.zeros((3, 20, 20)), 1, 0, 8, 0)


def test_shuffle_keeps_frame_zero_and_groups():
    rng = np.random.default_rng(0)
    orders = {tuple(shuffle_order(rng)) for _ in range(400)}
    for order in orders:
        assert order[0] == 0
        assert set(order[1:3]) == {1, 2} and set(order[3:6]) == {3, 4, 5} and set(order[6:9]) == {6, 7, 8}
    assert len(orders) == 2 * 6 * 6  # every allowed order occurs


def test_cosine_schedule_end_points():
    assert cosine_lr(0, 224_000, 3e-4, 1e-7) == pytest.approx(3e-4)
    assert cosine_lr(224_000, 224_000, 3e-4, 1e-7) == pytest.approx(1e-7)
    assert cosine_lr(112_000, 224_000, 3e-4, 1e-7) == pytest.approx((3e-4 + 1e-7) / 2)


def _train(out, data, *extra):
    result = runner.invoke(app, _train_args(out, data, *extra))
    assert result.exit_code == 0, result.output
    return result


def _train_args(out, data, *extra):
    return [
        "train",
        "--model",
        "flowcnrdb_tiny",
        "--data",
        str(data),
        "--out",
        str(out),
        "--iters",
        "4",
        "--crop",
        "32",
        "--batch",
        "2",
        "--val-every",
        "2",
        "--log-every",
        "1",
        "--val-crop",
        "64",
        "--workers",
        "1",
        *extra,
    ]


def test_resume_is_bitwise_exact(tmp_path, small_data):
    _train(tmp_path / "straight", small_data)
    _train(tmp_path / "resumed", small_data, "--stop-after", "2")
    assert pd.read_csv(tmp_path / "resumed" / "train_log.csv")["iteration"].max() == 2
    _train(tmp_path / "resumed", small_data, "--resume")
    a = torch.load(tmp_path / "straight" / "last.pth", weights_only=True)
    b = torch.load(tmp_path / "resumed" / "last.pth", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)
    log = pd.read_csv(tmp_path / "straight" / "train_log.csv")
    assert list(log.columns[:6]) == ["iteration", "loss", "lr", "val_psnr", "val_ssim", "seconds"]
    assert log["lr"].iloc[-1] == pytest.approx(1e-7)
    resumed = pd.read_csv(tmp_path / "resumed" / "train_log.csv")
    assert resumed["iteration"].tolist() == log["iteration"].tolist()
    assert resumed["seconds"].is_monotonic_increasing  # the clock goes on across the resume
    load_checkpoint(create_model("flowcnrdb_tiny"), tmp_path / "resumed" / "best.pth")


def test_scene_lists_override_the_splits(tmp_path, small_data):
    stopped = _train(tmp_path / "run", small_data, "--stop-after", "1", "--train-scenes", "1,3", "--val-scenes", "281")
    assert "iteration 1: loss" in stopped.output and "not validated at this iteration (every 2)" in stopped.output
    assert "nan" not in stopped.output.lower()
    bad = runner.invoke(
        app,
        [
            "train",
            "--model",
            "flowcnrdb_tiny",
            "--data",
            str(small_data),
            "--out",
            str(tmp_path / "x"),
            "--train-scenes",
            "9",
        ],
    )
    assert bad.exit_code == 2 and "009" in bad.output


def test_refuses_to_overwrite_or_resume_nothing(tmp_path, small_data):
    _train(tmp_path / "run", small_data, "--stop-after", "1")
    again = runner.invoke(
        app, ["train", "--model", "flowcnrdb_tiny", "--data", str(small_data), "--out", str(tmp_path / "run")]
    )
    assert again.exit_code == 2 and "--resume" in again.output
    nothing = runner.invoke(
        app, ["train", "--model", "flowcnrdb_tiny", "--data", str(small_data), "--out", str(tmp_path / "x"), "--resume"]
    )
    assert nothing.exit_code == 2 and "nothing to resume" in nothing.output


def test_two_process_gloo_ddp(tmp_path, small_data):
    torchrun = shutil.which("torchrun") or f"{sys.executable} -m torch.distributed.run"
    cmd = [
        *torchrun.split(),
        "--nproc-per-node",
        "2",
        "--no-python",
        "harness",
        "train",
        "--model",
        "flowcnrdb_tiny",
        "--data",
        str(small_data),
        "--out",
        str(tmp_path / "ddp"),
        "--iters",
        "3",
        "--crop",
        "32",
        "--batch",
        "2",
        "--val-every",
        "3",
        "--val-crop",
        "64",
        "--workers",
        "0",
        "--device",
        "cpu",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    load_checkpoint(create_model("flowcnrdb_tiny"), tmp_path / "ddp" / "last.pth")
    state = torch.load(tmp_path / "ddp" / "state.pth", weights_only=True)
    assert len(state["rng"]) == 2 and not torch.equal(state["rng"][0], state["rng"][1])
    assert pd.read_csv(tmp_path / "ddp" / "train_log.csv")["iteration"].tolist() == [3]


def test_a_model_the_meta_device_cannot_run_trains_unestimated_and_any_model_takes_even_crops(tmp_path, small_data):
    (tmp_path / "item_net.py").write_text(
        "import torch\n\n\nclass Net(torch.nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.conv = torch.nn.Conv2d(9, 3, 3, padding=1)\n\n"
        "    def forward(self, x):\n        return self.conv(x) * (1 + 0 * x.mean().item())  # .item(): no meta kernel\n"
    )
    result = _train(tmp_path / "run", small_data, "--model", f"{tmp_path / 'item_net.py'}:Net", "--stop-after", "1")
    assert "no memory estimate for" in result.output and "item_net.py:Net" in result.output
    assert (tmp_path / "run" / "last.pth").is_file()
    odd = runner.invoke(
        app,
        [
            "train",
            "--model",
            f"{tmp_path / 'item_net.py'}:Net",
            "--data",
            str(small_data),
            "--out",
            str(tmp_path / "odd"),
            "--crop",
            "33",
        ],
    )
    assert odd.exit_code == 2 and "multiples of 2" in odd.output  # any model: crops keep the Bayer phase
    assert not (tmp_path / "odd").exists()


def _free_memory_between(monkeypatch, crops: int, crop: int) -> None:
    """The free memory the tiny model needs for ``crops`` crops at once, and not for one more."""
    import harness.train.memory as memory

    model = create_model("flowcnrdb_tiny")
    have = (memory.training_memory(model, crops, crop) + memory.training_memory(model, crops + 1, crop)) // 2
    monkeypatch.setattr(memory, "available_memory", lambda device: have)


def test_a_batch_that_does_not_fit_is_refused_and_the_advised_micro_batch_trains(tmp_path, small_data, monkeypatch):
    _free_memory_between(monkeypatch, 1, 32)
    refused = runner.invoke(
        app, _train_args(tmp_path / "refused", small_data, "--micro-batch", "2", "--stop-after", "1")
    )
    line = next(line for line in refused.output.splitlines() if line.startswith("error:"))
    assert (
        refused.exit_code == 2
        and "more than the" in line
        and line.endswith("use --micro-batch 1, or --no-memory-check to try anyway")
    )
    assert not (tmp_path / "refused").exists()
    _train(tmp_path / "advised", small_data, "--micro-batch", "1", "--stop-after", "1")
    forced = _train(tmp_path / "forced", small_data, "--micro-batch", "2", "--stop-after", "1", "--no-memory-check")
    assert "warning: this configuration needs about" in forced.output
    chosen = _train(tmp_path / "chosen", small_data, "--stop-after", "1")  # no --micro-batch: the most that fit
    assert "warning: --micro-batch 1: 2 crops of 32x32 at once need about" in chosen.output
    assert json.loads((tmp_path / "chosen" / "config.json").read_text())["micro_batch"] == 1


def test_the_default_crop_is_the_largest_the_embedded_scenes_take(tmp_path, monkeypatch):
    import harness.train.memory as memory

    monkeypatch.setattr(memory, "available_memory", lambda device: 2**30)
    result = runner.invoke(app, ["train", "--out", str(tmp_path / "run"), "--stop-after", "1"])
    assert result.exit_code == 2 and "--crop 224: the largest crop these scenes take" in result.output
    assert "10 crops of 224x224 at once" in result.output and "use a smaller --crop" in result.output
    assert not (tmp_path / "run").exists()
