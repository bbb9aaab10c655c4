"""Code submissions the tests build as another team would: the challenge layout around a small model."""

from __future__ import annotations

import importlib.util
import textwrap
from pathlib import Path

import torch

TOY = textwrap.dedent("""
    import torch
    from torch import nn


    class Toy(nn.Module):
        def __init__(self, width=4):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(9, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, 3, 1))

        def forward(self, x):
            {hostile}
            return torch.sigmoid(self.body(x))
""")
DEMO = textwrap.dedent("""
    import torch
    from models.Model_05_Toy import Toy

    def main():
        model = Toy(width=4)
        model.load_state_dict(torch.load("model_zoo/Ckpt_05_Toy.pth"))

    if __name__ == "__main__":
        main()
""")


def toy_submission(root: Path, seed: int, hostile: str = "pass") -> Path:
    (root / "models").mkdir(parents=True)
    (root / "model_zoo").mkdir()
    (root / "models" / "Model_05_Toy.py").write_text(TOY.format(hostile=hostile))
    (root / "test_demo.py").write_text(DEMO)
    spec = importlib.util.spec_from_file_location("toy_for_weights", root / "models" / "Model_05_Toy.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # our own test's file: built here to save its seeded weights
    torch.manual_seed(seed)
    torch.save(module.Toy(width=4).state_dict(), root / "model_zoo" / "Ckpt_05_Toy.pth")
    return root
