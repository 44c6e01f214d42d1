"""Scorers: the ``@scorer`` registry and the built-in scorer families.

Built-in families (reference, structure, model-graded, operational, classical, human)
register themselves when the registry first needs them, so importing this package stays
cheap; third parties add scorers through the ``lockgate.scorers`` entry-point group.

Example:
    >>> info, score = build_scorer("contains", {"values": ["refund"], "ignore_case": True})
    >>> info.kind
    'case'
"""

from lockgate.scorers._registry import (
    ENTRY_POINT_GROUP,
    CaseScorer,
    DatasetScorer,
    ScorerContext,
    ScorerInfo,
    build_scorer,
    get_scorer,
    registered_scorers,
    scorer,
)
from lockgate.scorers._types import Case, Output, Score

__all__ = [
    "ENTRY_POINT_GROUP",
    "Case",
    "CaseScorer",
    "DatasetScorer",
    "Output",
    "Score",
    "ScorerContext",
    "ScorerInfo",
    "build_scorer",
    "get_scorer",
    "registered_scorers",
    "scorer",
]
