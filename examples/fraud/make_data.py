"""Generate the synthetic card-transaction data of the fraud example, deterministically.

The table mimics what a card issuer sees per transaction. Fraud (about 2.5% of rows)
follows a hidden rule with noise: card-not-present, night-time, large amounts, far from
home, electronics and travel merchants and a burst of recent transactions all make it
more likely, and no single feature decides it.

Running this script writes ``holdout.jsonl`` next to it: the held-out split in the suite
dataset format (``{"id", "vars", "expected"}``) that ``fraud-eval-v3.yaml`` scores. The
training split is never written to the repository; ``train.py`` regenerates it in memory
from the same seed.

    .venv/bin/python examples/fraud/make_data.py
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
HOLDOUT_PATH = HERE / "holdout.jsonl"

SEED = 20240917
N_ROWS = 20_000
N_HOLDOUT = 2_000

CATEGORIES = ("grocery", "travel", "electronics", "other")
FEATURES = (
    "amount",
    "hour",
    "merchant_category",
    "card_present",
    "distance_from_home_km",
    "n_tx_last_24h",
)
LABEL = "is_fraud"

# Shares of transactions per hour of day: quiet at night, peaks at lunch and evening.
_HOUR_WEIGHTS = np.array(
    [2, 1, 1, 1, 1, 2, 4, 6, 7, 7, 7, 8, 9, 8, 7, 7, 7, 8, 9, 9, 8, 6, 4, 3], dtype=float
)
_CATEGORY_SHARE = np.array([0.45, 0.12, 0.13, 0.30])
_CARD_PRESENT_RATE = np.array([0.92, 0.35, 0.55, 0.70])  # per category, same order
_TYPICAL_AMOUNT = np.array([45.0, 320.0, 180.0, 60.0])  # median spend per category


def generate(n_rows: int = N_ROWS, seed: int = SEED) -> list[dict[str, Any]]:
    """`n_rows` transactions with the label, the same for the same seed."""
    rng = np.random.default_rng(seed)
    category = rng.choice(len(CATEGORIES), size=n_rows, p=_CATEGORY_SHARE)
    hour = rng.choice(24, size=n_rows, p=_HOUR_WEIGHTS / _HOUR_WEIGHTS.sum())
    amount = np.round(rng.lognormal(np.log(_TYPICAL_AMOUNT[category]), 0.9), 2)
    amount = np.maximum(amount, 0.5)
    card_present = rng.random(n_rows) < _CARD_PRESENT_RATE[category]
    distance = np.round(rng.lognormal(np.log(8.0), 1.2, size=n_rows), 1)
    n_tx = rng.poisson(2.5, size=n_rows)

    night = (hour <= 5) | (hour == 23)
    risky_merchant = np.isin(category, [1, 2])
    relative_amount = np.log(amount / _TYPICAL_AMOUNT[category])
    logit = (
        -8.5
        + 3.0 * night
        + 2.6 * ~card_present
        + 1.5 * risky_merchant
        + 1.9 * np.clip(relative_amount, -1.0, 3.0)
        + 1.0 * np.log1p(distance / 25.0)
        + 0.5 * np.clip(n_tx - 2, 0, 8)
        + rng.normal(0.0, 0.4, size=n_rows)
    )
    is_fraud = rng.random(n_rows) < 1.0 / (1.0 + np.exp(-logit))
    # Fraudsters test a stolen card with a burst of transactions: push those rows up.
    n_tx = np.where(is_fraud & (rng.random(n_rows) < 0.5), n_tx + rng.poisson(4, n_rows), n_tx)

    return [
        {
            "amount": float(amount[i]),
            "hour": int(hour[i]),
            "merchant_category": CATEGORIES[category[i]],
            "card_present": bool(card_present[i]),
            "distance_from_home_km": float(distance[i]),
            "n_tx_last_24h": int(n_tx[i]),
            LABEL: int(is_fraud[i]),
        }
        for i in range(n_rows)
    ]


def split(
    rows: list[dict[str, Any]], n_holdout: int = N_HOLDOUT, seed: int = SEED
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(train, holdout): a seeded shuffle, the last `n_holdout` rows held out."""
    order = np.random.default_rng(seed + 1).permutation(len(rows))
    shuffled = [rows[i] for i in order]
    return shuffled[:-n_holdout], shuffled[-n_holdout:]


def to_csv(rows: list[dict[str, Any]]) -> str:
    """The rows as CSV text with a fixed column order (what the training hash covers)."""
    columns = (*FEATURES, LABEL)
    lines = [",".join(columns)]
    lines.extend(",".join(_csv_value(row[c]) for c in columns) for row in rows)
    return "\n".join(lines) + "\n"


def data_hash(rows: list[dict[str, Any]]) -> str:
    """``sha256:<hex>`` of the rows' CSV form: identifies the exact training data."""
    return "sha256:" + hashlib.sha256(to_csv(rows).encode("utf-8")).hexdigest()


def holdout_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The held-out rows in the suite dataset format, one JSON object per line."""
    return [
        json.dumps(
            {
                "id": f"tx-{index:05d}",
                "vars": {name: row[name] for name in FEATURES},
                "expected": row[LABEL],
            },
            separators=(",", ":"),
        )
        for index, row in enumerate(rows, start=1)
    ]


def write_holdout(rows: list[dict[str, Any]], path: Path = HOLDOUT_PATH) -> Path:
    path.write_text("\n".join(holdout_lines(rows)) + "\n", encoding="utf-8")
    return path


def _csv_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def main() -> None:
    rows = generate()
    train, holdout = split(rows)
    path = write_holdout(holdout)
    positives = sum(row[LABEL] for row in rows) / len(rows)
    print(
        f"{len(rows)} transactions, {positives:.2%} fraud; "
        f"train {len(train)} rows (in memory, {data_hash(train)[:19]}…), "
        f"holdout {len(holdout)} rows -> {path.name} ({path.stat().st_size / 1024:.0f} KiB)"
    )


if __name__ == "__main__":
    main()
