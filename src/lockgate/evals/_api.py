"""The Python entry points: `run_suite`, `reproduce`."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass, field

from lockgate.config import Settings, load_settings
from lockgate.errors import UserError
from lockgate.evals._persist import RunStore
from lockgate.evals._runner import EvalRunner, Progress, RunOptions
from lockgate.evals._suite import resolve
from lockgate.evals._types import AttemptResult, RunReport
from lockgate.providers import CacheMode
from lockgate.registry import Registry
from lockgate.scorers._registry import get_scorer

# Scores that measure the machine, not the model: they legitimately differ on replay.
UNREPRODUCIBLE_SCORERS = frozenset({"latency_ms"})


async def arun_suite(
    ref: str,
    *,
    target: str | None = None,
    settings: Settings | None = None,
    registry: Registry | None = None,
    cache: CacheMode | None = None,
    repeats: int | None = None,
    concurrency: int | None = None,
    seed: int | None = None,
    baseline_run: str | None = None,
    on_progress: Callable[[Progress], None] | None = None,
) -> RunReport:
    """Async `run_suite`."""
    settings = settings or load_settings()
    owned = registry is None
    registry = registry or Registry.open(settings)
    try:
        resolved = resolve(registry, ref, target=target)
        options = RunOptions(
            cache_mode=cache or ("use" if settings.cache.enabled else "off"),
            repeats=repeats,
            concurrency=concurrency,
            seed=seed,
            baseline_run=baseline_run,
            on_progress=on_progress,
        )
        return await EvalRunner(registry, settings).run(resolved, options)
    finally:
        if owned:
            registry.close()


def run_suite(ref: str, **kwargs: object) -> RunReport:
    """Run a suite and return its report; ``report.gate_passed`` is the verdict.

    Example:
        >>> report = lockgate.run_suite("support-triage-eval@4")
        >>> report.status, report.pass_rate, report.pass_rate_interval
        ('passed', 0.93, (0.88, 0.96))

    Args:
        ref: a suite (``support-triage-eval@4`` or ``support-triage-eval-v4``), or a
            prompt/model whose ``eval_suite`` names one (``support-triage@5``).
        **kwargs: see `arun_suite` (target, settings, cache, repeats, concurrency, seed,
            baseline_run, on_progress).
    """
    return asyncio.run(arun_suite(ref, **kwargs))  # type: ignore[arg-type]


def _same(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return a == b or (math.isnan(a) and math.isnan(b))


def _attempt_differences(
    key: tuple[str, int], old: AttemptResult | None, new: AttemptResult | None
) -> list[str]:
    where = f"case {key[0]} attempt {key[1]}"
    if old is None or new is None:
        return [f"{where}: only in {'the replay' if old is None else 'the original'}"]
    lines = []
    if old.output.text != new.output.text:
        lines.append(f"{where}: output differs")
    if old.status != new.status:
        lines.append(f"{where}: {old.status} → {new.status}")
    # Scores pair by position: a suite may use one scorer twice with other arguments.
    if len(old.scores) != len(new.scores):
        lines.append(f"{where}: {len(old.scores)} scores → {len(new.scores)}")
    for was, now in zip(old.scores, new.scores, strict=False):
        if now.scorer in UNREPRODUCIBLE_SCORERS:
            continue
        if was.scorer != now.scorer or not _same(was.score.value, now.score.value):
            lines.append(f"{where}: {was.scorer} {was.score.value} → {now.score.value}")
    return lines


@dataclass(frozen=True)
class Reproduction:
    """A replay of a recorded run, compared score by score with the original."""

    original: str
    replay: RunReport
    compared: int
    differences: list[str] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return not self.differences


def reproduce(run_id: str, *, settings: Settings | None = None) -> Reproduction:
    """Replay run `run_id` from the response cache and check every score is identical.

    The replay uses the recorded suite and target versions, seeds and repeats, with the
    cache in replay mode: a call that was not recorded fails with `ReplayMiss`.
    Latency scores are skipped (they measure the machine, not the model).
    """
    settings = settings or load_settings()
    registry = Registry.open(settings)
    try:
        runs = RunStore(registry.store)
        original = runs.get(run_id)
        manifest = original.manifest
        recorded = runs.attempts(original.id)
        errored = sum(1 for a in recorded if a.status == "errored")
        if errored:
            raise UserError(
                f"run {original.id[:12]} has {errored} errored attempts; errors are never "
                "recorded, so it cannot be replayed exactly (run the suite again instead)"
            )
        report = asyncio.run(
            arun_suite(
                original.suite_ref,
                target=original.target_ref,
                settings=settings,
                registry=registry,
                cache="replay",
                repeats=int(manifest.get("repeats", 1)),
                seed=int(manifest.get("seed", 0)),
            )
        )
        before = {(a.case_id, a.attempt): a for a in recorded}
        after = {(a.case_id, a.attempt): a for a in runs.attempts(report.run_id)}
        differences = [
            line
            for key in sorted(before.keys() | after.keys())
            for line in _attempt_differences(key, before.get(key), after.get(key))
        ]
        # Attempt scores were compared above; dataset metrics (F1, ROC AUC…) are compared
        # here. Aggregates such as mean_score also reflect human reviews, which a replay
        # does not carry over.
        old_metrics = (original.report or {}).get("metrics", {})
        dataset_metrics = {
            spec["name"]
            for spec in manifest.get("scorers", [])
            if get_scorer(spec["name"]).kind == "dataset"
        }
        for name, value in sorted(report.metrics.items()):
            if name not in dataset_metrics:
                continue
            was = old_metrics.get(name)
            if not _same(was, value):
                differences.append(f"metric {name}: {was} → {value}")
        return Reproduction(original.id, report, len(before), differences)
    finally:
        registry.close()
