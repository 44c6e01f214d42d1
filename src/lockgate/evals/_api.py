"""The Python entry points: `run_suite`, `reproduce`."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass, field

from lockgate.config import Settings, load_settings
from lockgate.evals._persist import RunStore
from lockgate.evals._runner import EvalRunner, Progress, RunOptions
from lockgate.evals._suite import resolve
from lockgate.evals._types import RunReport
from lockgate.providers import CacheMode
from lockgate.registry import Registry

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
        before = {(a.case_id, a.attempt): a for a in runs.attempts(original.id)}
        after = {(a.case_id, a.attempt): a for a in runs.attempts(report.run_id)}
        differences = []
        for key in sorted(before.keys() | after.keys()):
            old, new = before.get(key), after.get(key)
            where = f"case {key[0]} attempt {key[1]}"
            if old is None or new is None:
                differences.append(
                    f"{where}: only in {'the replay' if old is None else 'the original'}"
                )
                continue
            if old.output.text != new.output.text:
                differences.append(f"{where}: output differs")
            if old.status != new.status:
                differences.append(f"{where}: {old.status} → {new.status}")
            old_scores = {r.scorer: r.score.value for r in old.scores}
            for record in new.scores:
                if record.scorer in UNREPRODUCIBLE_SCORERS:
                    continue
                was = old_scores.get(record.scorer)
                now = record.score.value
                same = was is not None and (was == now or (math.isnan(was) and math.isnan(now)))
                if not same:
                    differences.append(f"{where}: {record.scorer} {was} → {now}")
        return Reproduction(original.id, report, len(before), differences)
    finally:
        registry.close()
