"""How often drift monitoring cries wolf, and how often it sees a real shift, on the examples' own data.

    python bench/drift_rates.py [--windows 100] [--rows 1000]

Each window is ``--rows`` requests drawn (with replacement, seeded) from data the reference has
not seen, run through the model in-process (pre hook, model, the same features and bins a served
instance counts), summarized and judged against the function's committed reference exactly as
``modelfn monitor report`` judges a period. Reported: the share of windows judged "drift", the median
share of drifted input features, and the features flagged most.

- functions/digits (reference: its 360 held-out images): windows of the 1,437 training images as
  they are (the false alarm rate), inverted (16 - x), drawn thicker (each stroke spread one pixel
  right and down) and noisier (Gaussian noise of sd 1 and 2, clipped to 0..16);
- functions/churn (reference: its 1,000 held-out rows): new customers from the same generator
  (another seed), and with the plan mix changed from 50/20/30 to 20/20/60 (basic/family/pro).

Writes bench/results/drift_rates.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))

DIGITS = ROOT / "functions" / "digits"
CHURN = ROOT / "functions" / "churn"


def load(folder: Path):
    from modelfn.function import ModelFunction
    from modelfn.monitoring.summary import Reference
    from modelfn.settings import Settings

    model = ModelFunction(folder, Settings(request_log=False)).model()
    return model, Reference(json.loads((folder / "reference.json").read_text()))


def judge(model, reference, inputs: dict[str, np.ndarray]):
    from modelfn.monitoring.features import features
    from modelfn.monitoring.stats import score, verdict
    from modelfn.monitoring.summary import Counts

    counts = Counts(reference)
    counts.add(features(model.contract, inputs, model.infer(inputs)))
    scores = score(reference, counts.take())
    return verdict(scores), [s.name for s in scores if s.drifted]


def rate(name: str, windows: int, make: Callable[[np.random.Generator], dict[str, np.ndarray]], model, reference,
         seed: int) -> str:  # fmt: skip
    rng = np.random.default_rng(seed)
    judged, shares, flagged = 0, [], Counter()
    for _ in range(windows):
        result, names = judge(model, reference, make(rng))
        judged += result.drift
        shares.append(result.share)
        flagged.update(names)
    top = ", ".join(f"{n} ({c})" for n, c in flagged.most_common(4)) or "none"
    return (f"| {name} | {judged}/{windows} ({judged / windows:.0%}) | {np.median(shares):.2f} | "
            f"{min(shares):.2f}-{max(shares):.2f} | {top} |")  # fmt: skip


def digits_rows(args: argparse.Namespace) -> list[str]:
    from helpers import load_train_module

    model, reference = load(DIGITS)
    x_train = load_train_module().heldout_split()[0].reshape(-1, 64).astype(np.float32)

    def drawn(change: Callable[[np.ndarray, np.random.Generator], np.ndarray]):
        def make(rng: np.random.Generator) -> dict[str, np.ndarray]:
            x = x_train[rng.integers(0, len(x_train), args.rows)]
            return {"pixels": change(x, rng).astype(np.float32)}

        return make

    def thicker(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        image = x.reshape(-1, 8, 8)
        out = image.copy()
        out[:, :, 1:] = np.maximum(out[:, :, 1:], image[:, :, :-1])
        out[:, 1:, :] = np.maximum(out[:, 1:, :], image[:, :-1, :])
        return out.reshape(-1, 64)

    cases = {
        "digits, training images (no shift)": lambda x, rng: x,
        "digits, inverted": lambda x, rng: 16 - x,
        "digits, thicker": thicker,
        "digits, noise sd 2": lambda x, rng: np.clip(x + rng.normal(0, 2, x.shape), 0, 16),
        "digits, noise sd 1": lambda x, rng: np.clip(x + rng.normal(0, 1, x.shape), 0, 16),
    }
    return [rate(name, args.windows, drawn(change), model, reference, seed) for seed, (name, change)
            in enumerate(cases.items())]  # fmt: skip


def churn_rows(args: argparse.Namespace) -> list[str]:
    import importlib.util

    from modelfn.table import columns_of_rows

    spec = importlib.util.spec_from_file_location("churn_train", CHURN / "train.py")
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)  # type: ignore[union-attr]
    model, reference = load(CHURN)

    def customers(plans: list[float]):
        def make(rng: np.random.Generator) -> dict[str, np.ndarray]:
            frame, _ = train.customers(args.rows, seed=int(rng.integers(1 << 30)))
            if plans:
                frame["plan"] = rng.choice(train.PLANS, args.rows, p=plans)
                base = {"basic": 25.0, "family": 60.0, "pro": 45.0}
                frame["monthly"] = np.round([base[p] + rng.normal(0, 6) for p in frame["plan"]], 2)
            rows = frame.astype(object).where(frame.notna(), None).to_dict("records")
            return columns_of_rows(model.contract, rows, "rows")

        return make

    shifted = customers([0.2, 0.2, 0.6])
    return [rate("churn, new customers (no shift)", args.windows, customers([]), model, reference, 10),
            rate("churn, plan mix 20/20/60", args.windows, shifted, model, reference, 11)]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--windows", type=int, default=100)
    parser.add_argument("--rows", type=int, default=1000)
    args = parser.parse_args()
    lines = [
        f"Windows of {args.rows:,} requests judged against each function's committed reference as `modelfn monitor "
        f"report` judges them (drift: at least half the input features at 0.1, or the predicted class); "
        f"{args.windows} windows a case, seeded.",
        "",
        "| case | judged drift | share of input features drifted (median) | range | features flagged most (windows) |",
        "|---|---:|---:|---:|---|",
        *digits_rows(args),
        *churn_rows(args),
    ]
    text = "\n".join(lines) + "\n"
    (HERE / "results" / "drift_rates.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
