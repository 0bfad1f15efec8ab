"""Train the digits CNN in PyTorch and save it as an exported program, reproducibly.

    python functions/digits-torch/train.py [--out functions/digits-torch/model.pt2]

The data is scikit-learn's bundled ``load_digits`` with the split of ``functions/digits/train.py``
(the same seed: 1,437 images to train on, 360 held out; nothing is downloaded). The network takes
the 64 raw pixel values (0..16) of each image, rescales them, and reads them as one 8x8 channel:
two 3x3 convolutions (16 and 32 channels, ReLU), a 2x2 max-pool, 64 ReLU units and a softmax over
the 10 digits. It answers ``probabilities`` and ``label`` (their argmax), like ``functions/digits``.

The program is saved with ``torch.export.save`` with a free batch dimension, and the held-out
images with their labels go to ``validation.npz`` for ``modelfn convert``. Seeds, one thread and
deterministic algorithms make two runs on one machine give the same weights (the test compares
predictions, as float kernels may differ across CPU families).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
from pathlib import Path

HERE = Path(__file__).resolve().parent
# functions/digits/train.py: one seed and one held-out split for every digits model.
_spec = importlib.util.spec_from_file_location("digits_train", HERE.parent / "digits" / "train.py")
_digits = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_digits)
SEED, heldout_split = _digits.SEED, _digits.heldout_split

EPOCHS = 40
BATCH = 32
LEARNING_RATE = 3e-3


def network():
    import torch
    from torch import nn

    class DigitsCNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)
            )
            self.head = nn.Sequential(nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, 10))

        def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            logits = self.head(self.features((pixels / 16.0).reshape(-1, 1, 8, 8)))
            probabilities = torch.softmax(logits, dim=1)
            return probabilities, torch.argmax(probabilities, dim=1)

    return DigitsCNN()


def train(x_train, y_train):
    """Fit the network with every source of randomness pinned."""
    import torch

    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    model = network()
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    x, y = torch.from_numpy(x_train), torch.from_numpy(y_train)
    generator = torch.Generator().manual_seed(SEED)
    model.train()
    for _ in range(EPOCHS):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), BATCH):
            rows = order[start : start + BATCH]
            logits = model.head(model.features((x[rows] / 16.0).reshape(-1, 1, 8, 8)))
            loss = torch.nn.functional.cross_entropy(logits, y[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


def export(model, path: Path) -> None:
    import torch

    example = (torch.zeros(2, 64),)
    batch = torch.export.Dim("batch", min=1, max=4096)
    program = torch.export.export(model, example, dynamic_shapes={"pixels": {0: batch}})
    torch.export.save(program, str(path))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=HERE / "model.pt2")
    args = parser.parse_args()
    import numpy as np
    import torch

    x_train, x_test, y_train, y_test = heldout_split()
    model = train(x_train, y_train)
    export(model, args.out)
    np.savez(args.out.parent / "validation.npz", pixels=x_test, labels=y_test)
    data = args.out.read_bytes()
    program = torch.export.load(str(args.out)).module()
    with torch.inference_mode():
        _, labels = program(torch.from_numpy(x_test))
    print(f"wrote {args.out} ({len(data)} bytes) and validation.npz")
    print(f"sha256: {hashlib.sha256(data).hexdigest()}")
    print(f"held-out accuracy: {float((labels.numpy() == y_test).mean()):.4f} on {len(y_test)} images")


if __name__ == "__main__":
    main()
