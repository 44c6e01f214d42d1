"""What a scorer works on: a dataset case, the target's output, and the score it gives.

These live with the scorers (the lower layer) so that scorers, built-in or third-party,
never import the evaluation engine; `lockgate.evals` re-exports them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any


@dataclass(frozen=True)
class Case:
    """One dataset row.

    Attributes:
        id: stable identifier (the row's ``id`` field, else its 1-based position).
        input: the user input (``input`` field), if any.
        vars: template variables (``vars`` field; ``input`` is added when present).
        expected: the reference answer (``expected`` or ``reference``).
        context: retrieved or given sources for groundedness (``context``).
        metadata: anything else on the row.
    """

    id: str
    input: Any = None
    vars: dict[str, Any] = field(default_factory=dict)
    expected: Any = None
    context: list[str] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Output:
    """What the target produced for one attempt of one case.

    For an LLM target `text` is the answer. For a classical model `prediction` is the
    predicted label or value and `probabilities` the class probabilities (when the model
    has them); `text` is ``str(prediction)``.
    """

    text: str
    prediction: Any = None
    probabilities: dict[str, float] | None = None
    latency_ms: float = 0.0
    cost_usd: Decimal | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    tokens_estimated: bool = False
    cached: bool = False
    error: str | None = None
    sources: list[str] | None = None


@dataclass(frozen=True)
class Score:
    """A scorer's verdict on one attempt (or on the whole dataset).

    `value` is in 0..1, higher is better (it feeds the weighted mean score). Scorers that
    measure a raw quantity (latency in ms, cost in USD, tokens) report 1.0 or 0.0 as
    `value` and put the measurement in ``details["measured"]``. A NaN value never passes.
    """

    value: float
    passed: bool
    reason: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if math.isnan(self.value) and self.passed:
            object.__setattr__(self, "passed", False)
