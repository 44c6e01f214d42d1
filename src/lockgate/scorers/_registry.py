"""The scorer registry: ``@scorer`` on a factory, persisted as ``{name, args}``.

A scorer is registered as a *factory*: a function taking the scorer's arguments (the
``args`` of a suite's scorer spec) and returning the scoring callable. Suites therefore
store names and arguments, never code. Two shapes exist:

- ``kind="case"``: ``async def score(output: Output, case: Case, ctx: ScorerContext) -> Score``
  called once per attempt;
- ``kind="dataset"``: ``def score(outputs: list[Output], cases: list[Case]) -> Score`` called
  once with every attempt's output (classical metrics such as F1 or ROC AUC).

Example:
    >>> @scorer("shouts", description="The answer is upper case.")
    ... def shouts(min_length: int = 1) -> CaseScorer:
    ...     async def score(output: Output, case: Case, ctx: ScorerContext) -> Score:
    ...         ok = output.text.isupper() and len(output.text) >= min_length
    ...         return Score(1.0 if ok else 0.0, ok)
    ...     return score

Third-party packages register scorers through the ``lockgate.scorers`` entry-point group
(``name = "package.module:factory"``, the factory decorated with ``@scorer``).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Literal, TypeAlias

from lockgate.errors import UserError
from lockgate.scorers._types import Case, Output, Score

ENTRY_POINT_GROUP = "lockgate.scorers"

ScorerKind = Literal["case", "dataset"]


@dataclass
class ScorerContext:
    """What a case scorer may use besides the output and the case.

    Attributes:
        client: a `lockgate.providers.Client` for judges and embeddings (None when the
            run has no model access, e.g. a classical-model suite).
        judge_model: the default judge model reference (the local model by default).
        threshold: the spec's threshold, if any (scorers may use it as their cut-off).
        extras: per-run shared state (e.g. a loaded embedding model), keyed by scorer.
    """

    client: Any = None
    judge_model: str = "local/qwen2.5-coder-1.5b-instruct"
    threshold: float | None = None
    extras: dict[str, Any] = field(default_factory=dict)


CaseScorer: TypeAlias = Callable[[Output, Case, ScorerContext], Awaitable[Score]]
DatasetScorer: TypeAlias = Callable[[list[Output], list[Case]], Score]
ScorerFactory: TypeAlias = Callable[..., CaseScorer | DatasetScorer]


@dataclass(frozen=True)
class ScorerInfo:
    """A registered scorer: its name, shape, factory and one-line description."""

    name: str
    kind: ScorerKind
    factory: ScorerFactory
    description: str
    needs_model: bool = False


_registry: dict[str, ScorerInfo] = {}
_builtins_loaded = False

BUILTIN_MODULES = (
    "lockgate.scorers._reference",
    "lockgate.scorers._structure",
    "lockgate.scorers._model_graded",
    "lockgate.scorers._operational",
    "lockgate.scorers._classical",
    "lockgate.scorers._human",
)


def scorer(
    name: str,
    *,
    kind: ScorerKind = "case",
    description: str = "",
    needs_model: bool = False,
) -> Callable[[ScorerFactory], ScorerFactory]:
    """Register a scorer factory under `name` (built-ins and plugins alike)."""

    def register(factory: ScorerFactory) -> ScorerFactory:
        doc = description or (inspect.getdoc(factory) or "").split("\n")[0]
        _registry[name] = ScorerInfo(name, kind, factory, doc, needs_model)
        return factory

    return register


def registered_scorers() -> dict[str, ScorerInfo]:
    """Every known scorer: built-ins, entry-point plugins, and runtime registrations."""
    _load_builtins()
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in _registry:
            ep.load()  # importing the module runs its @scorer decorators
    return dict(_registry)


def get_scorer(name: str) -> ScorerInfo:
    """The scorer registered as `name`.

    Raises:
        UserError: no such scorer (the message lists the known ones).
    """
    _load_builtins()
    if name not in _registry:
        for ep in entry_points(group=ENTRY_POINT_GROUP, name=name):
            ep.load()
    if name not in _registry:
        known = ", ".join(sorted(registered_scorers()))
        raise UserError(f"unknown scorer '{name}'; known scorers: {known}")
    return _registry[name]


def build_scorer(name: str, args: dict[str, Any]) -> tuple[ScorerInfo, CaseScorer | DatasetScorer]:
    """Instantiate scorer `name` with `args`, turning bad arguments into a clear error."""
    info = get_scorer(name)
    signature = inspect.signature(info.factory)
    try:
        signature.bind(**args)
    except TypeError as exc:
        accepted = ", ".join(signature.parameters) or "no arguments"
        raise UserError(f"scorer '{name}': {exc} (it accepts: {accepted})") from None
    try:
        return info, info.factory(**args)
    except (TypeError, ValueError) as exc:
        raise UserError(f"scorer '{name}': {exc}") from None


def _load_builtins() -> None:
    global _builtins_loaded
    if _builtins_loaded:
        return
    _builtins_loaded = True
    for module in BUILTIN_MODULES:
        importlib.import_module(module)
