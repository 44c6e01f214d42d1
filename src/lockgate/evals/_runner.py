"""Running a suite: every case × repeats against the target, scored, stored as it goes.

Concurrency is bounded by a semaphore; each model call has its own timeout and the
provider layer's retries. Attempts are written to the store in batches while the run
goes, so an interrupted run (Ctrl-C, a crash) keeps what it did and is marked
``incomplete``. An errored call is recorded as errored, never scored as a pass.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from lockgate._version import __version__
from lockgate.config import Settings
from lockgate.errors import LockgateError, ReplayMiss, RuntimeFailure, UserError
from lockgate.evals._build import build_report, report_to_dict
from lockgate.evals._persist import RunRow, RunStore
from lockgate.evals._suite import ResolvedSuite, resolve
from lockgate.evals._types import (
    AttemptResult,
    Case,
    Output,
    RunReport,
    Score,
    ScoreRecord,
    verdict,
)
from lockgate.providers import CacheMode, Client
from lockgate.registry import Prompt, PromptSpec, Registry
from lockgate.scorers._registry import (
    CaseScorer,
    DatasetScorer,
    ScorerContext,
    ScorerInfo,
    build_scorer,
)

DEFAULT_JUDGE = "local/qwen2.5-coder-1.5b-instruct"
_FLUSH_EVERY = 50


@dataclass(frozen=True)
class Progress:
    """Counts after each finished attempt, for progress bars."""

    done: int
    total: int
    passed: int
    failed: int
    errored: int

    @property
    def pass_rate(self) -> float:
        scored = self.passed + self.failed + self.errored
        return self.passed / scored if scored else math.nan


@dataclass
class RunOptions:
    """Per-run choices that override the suite's own (None = the suite's value)."""

    cache_mode: CacheMode = "use"
    concurrency: int | None = None
    repeats: int | None = None
    seed: int | None = None
    timeout_s: float | None = None
    baseline_run: str | None = None
    on_progress: Callable[[Progress], None] | None = None


@dataclass
class _Scorers:
    case: list[tuple[ScorerInfo, CaseScorer, float, float | None]] = field(default_factory=list)
    dataset: list[tuple[ScorerInfo, DatasetScorer, float | None]] = field(default_factory=list)


class EvalRunner:
    """Runs resolved suites and records their results.

    Example:
        >>> runner = EvalRunner(registry, settings)
        >>> report = asyncio.run(runner.run(resolve(registry, "support-triage-eval@4")))
    """

    def __init__(self, registry: Registry, settings: Settings, *, actor: str | None = None):
        self.registry = registry
        self.settings = settings
        self.runs = RunStore(registry.store)
        self.actor = actor or registry.actor

    async def run(self, suite: ResolvedSuite, options: RunOptions | None = None) -> RunReport:
        """Run `suite` to the end (or until cancelled) and return its report."""
        options = options or RunOptions()
        scorers = _build_scorers(suite)
        is_model = suite.target.kind == "model"
        repeats = 1 if is_model else options.repeats or suite.spec.repeats
        warnings: list[str] = []
        if is_model and (options.repeats or suite.spec.repeats) > 1:
            warnings.append("repeats ignored: a classical model is deterministic (ran once)")
        client = (
            Client(self.settings, store=self.registry.store, cache_mode=options.cache_mode)
            if not is_model
            else None
        )
        prompt = self.registry.load_prompt(suite.target.ref) if not is_model else None
        if prompt is not None and prompt.spec.retrieval is not None:
            warnings.append(
                f"{prompt.ref} retrieves from index '{prompt.spec.retrieval.index}'; lockgate "
                "has no vector index yet, so each case's 'context' stands in for retrieved "
                "sources"
            )
        run_id = uuid.uuid4().hex
        manifest = self._manifest(suite, options, repeats, prompt, client)
        manifest["warnings"] = warnings  # run-time facts; a re-decision starts from these
        self.runs.create(
            run_id,
            suite=(suite.suite.name, suite.suite.version),
            target=(suite.target.name, suite.target.version),
            manifest=manifest,
            actor=self.actor,
        )
        context = ScorerContext(
            client=client,
            judge_model=suite.spec.judge_model or DEFAULT_JUDGE,
        )
        started = time.time()
        attempts: list[AttemptResult] = []
        pending: list[AttemptResult] = []
        total = len(suite.cases) * repeats
        counts = {"passed": 0, "failed": 0, "errored": 0}

        def record(result: AttemptResult) -> None:
            attempts.append(result)
            pending.append(result)
            key = (
                "passed" if result.passed else "errored" if result.status == "errored" else "failed"
            )
            counts[key] += 1
            if len(pending) >= _FLUSH_EVERY:
                self.runs.save_attempts(run_id, pending[:])
                pending.clear()
            if options.on_progress is not None:
                options.on_progress(Progress(len(attempts), total, **counts))

        done = False
        try:
            if is_model:
                for result in await self._run_model(suite, scorers, context):
                    record(result)
            else:
                assert prompt is not None and client is not None
                await self._run_prompt(
                    suite, prompt, client, scorers, context, options, repeats, record
                )
            done = True
        finally:
            self.runs.save_attempts(run_id, pending)
            pending.clear()
            if client is not None:
                await client.aclose()
            if not done:  # cancelled, Ctrl-C, replay miss, or a failure: keep what we have
                self._settle(run_id, suite, attempts, scorers, manifest, started, True, None)
        return self._settle(
            run_id, suite, attempts, scorers, manifest, started, False, options.baseline_run
        )

    # -- targets ---------------------------------------------------------------------

    async def _run_prompt(
        self,
        suite: ResolvedSuite,
        prompt: Prompt,
        client: Client,
        scorers: _Scorers,
        context: ScorerContext,
        options: RunOptions,
        repeats: int,
        record: Callable[[AttemptResult], None],
    ) -> None:
        limit = asyncio.Semaphore(options.concurrency or suite.spec.concurrency)
        timeout = options.timeout_s or suite.spec.timeout_s
        base_seed = (
            options.seed
            if options.seed is not None
            else (prompt.spec.seed if prompt.spec.seed is not None else suite.spec.seed)
        )
        params = _prompt_params(prompt.spec)

        async def one(case: Case, attempt: int) -> None:
            async with limit:
                output = await _call(client, prompt, case, params, base_seed + attempt, timeout)
                record(await _score(case, attempt, output, scorers, context))

        tasks = [
            asyncio.ensure_future(one(case, attempt))
            for attempt in range(repeats)
            for case in suite.cases
        ]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _run_model(
        self, suite: ResolvedSuite, scorers: _Scorers, context: ScorerContext
    ) -> list[AttemptResult]:
        from lockgate.evals._model_loading import load_model  # heavy: skops, onnxruntime

        model = load_model(suite.target, self.registry.store.blobs)
        rows = [dict(case.vars) for case in suite.cases]
        ids = [case.id for case in suite.cases]
        started = time.perf_counter()
        predictions = await asyncio.to_thread(model.predict, rows, ids)
        probabilities = await asyncio.to_thread(model.predict_proba, rows, ids)
        per_row_ms = (time.perf_counter() - started) * 1000 / max(1, len(rows))
        # For a classifier each row is a case that passes when it is labelled right, so the
        # pass rate is accuracy and McNemar's test compares two models row by row.
        classify = suite.target.spec.get("task") == "classification"
        results = []
        for index, case in enumerate(suite.cases):
            output = Output(
                text=str(predictions[index]),
                prediction=predictions[index],
                probabilities=probabilities[index] if probabilities is not None else None,
                latency_ms=per_row_ms,
                cost_usd=Decimal(0),  # an in-process model has no per-call price
            )
            result = await _score(case, 0, output, scorers, context)
            if classify and case.expected is not None and result.status != "errored":
                result = _with_correctness(result, predictions[index], case.expected)
            results.append(result)
        return results

    # -- bookkeeping ---------------------------------------------------------------------

    def _manifest(
        self,
        suite: ResolvedSuite,
        options: RunOptions,
        repeats: int,
        prompt: Prompt | None,
        client: Client | None,
    ) -> dict[str, Any]:
        manifest: dict[str, Any] = {
            "lockgate_version": __version__,
            "suite": {"ref": suite.suite.ref, "digest": suite.suite.digest},
            "target": {
                "ref": suite.target.ref,
                "kind": suite.target.kind,
                "digest": suite.target.digest,
            },
            "dataset_digest": suite.dataset_digest,
            "cases": len(suite.cases),
            "repeats": repeats,
            "seed": options.seed if options.seed is not None else suite.spec.seed,
            "cache_mode": options.cache_mode,
            "scorers": [s.model_dump(mode="json") for s in suite.spec.scorers],
            "judge_model": suite.spec.judge_model or DEFAULT_JUDGE,
        }
        if prompt is not None and client is not None:
            resolved = client.resolve(prompt.spec.model)
            manifest["model"] = {
                "requested": prompt.spec.model,
                "resolved": resolved.ref,
                "provider_type": resolved.provider_type,
            }
            manifest["params"] = _prompt_params(prompt.spec)
            if prompt.spec.seed is not None and options.seed is None:
                manifest["seed"] = prompt.spec.seed
        if suite.target.kind == "model":
            blob = suite.target.files.get("file")
            manifest["model_file_sha256"] = blob.sha256 if blob else None
        return manifest

    def _settle(
        self,
        run_id: str,
        suite: ResolvedSuite,
        attempts: list[AttemptResult],
        scorers: _Scorers,
        manifest: dict[str, Any],
        started: float,
        interrupted: bool,
        baseline_run: str | None,
    ) -> RunReport:
        """Decide and store the run; never leave it 'running' if deciding fails."""
        try:
            if not interrupted:
                self.runs.add_reviews(run_id, _review_items(suite, attempts))
            return decide(
                self.registry,
                run_id=run_id,
                suite=suite,
                attempts=attempts,
                scorers=scorers,
                manifest=manifest,
                started=started,
                interrupted=interrupted,
                baseline_run=baseline_run,
                actor=self.actor,
            )
        except BaseException:
            self.runs.mark(run_id, "incomplete")
            raise


def decide(
    registry: Registry,
    *,
    run_id: str,
    suite: ResolvedSuite,
    attempts: list[AttemptResult],
    scorers: _Scorers,
    manifest: dict[str, Any],
    started: float,
    interrupted: bool,
    baseline_run: str | None,
    actor: str,
) -> RunReport:
    """Build a run's report from its attempts, gate it, and store the outcome."""
    runs = RunStore(registry.store)
    report = build_report(
        run_id=run_id,
        suite=suite,
        attempts=attempts,
        dataset_scores=_dataset_scores(suite, attempts, scorers),
        warnings=list(manifest.get("warnings", [])),
        manifest=manifest,
        started=started,
        interrupted=interrupted,
        runs=runs,
        registry=registry,
        baseline_run=baseline_run,
    )
    runs.finish(
        run_id,
        status=report.status,
        report=report_to_dict(report),
        pass_rate=report.pass_rate if not math.isnan(report.pass_rate) else None,
        gate_passed=report.gate_passed if report.status in ("passed", "failed") else None,
        baseline_run_id=report.comparison.baseline_run_id if report.comparison else None,
        actor=actor,
    )
    return report


def rebuild_report(registry: Registry, row: RunRow, attempts: list[AttemptResult]) -> RunReport:
    """Re-decide a stored run from (possibly review-patched) attempts and store the result."""
    suite = resolve(registry, row.suite_ref, target=row.target_ref)
    return decide(
        registry,
        run_id=row.id,
        suite=suite,
        attempts=attempts,
        scorers=_build_scorers(suite),
        manifest=row.manifest,
        started=row.started_at.timestamp(),
        interrupted=row.status == "incomplete",
        baseline_run=row.baseline_run_id,
        actor=registry.actor,
    )


def _review_items(suite: ResolvedSuite, attempts: list[AttemptResult]) -> list[dict[str, Any]]:
    by_case = {case.id: case for case in suite.cases}
    order = {case.id: index for index, case in enumerate(suite.cases)}
    items = []
    # Queue in dataset order, whatever order concurrent attempts finished in.
    for attempt in sorted(attempts, key=lambda a: (order[a.case_id], a.attempt)):
        if attempt.status != "pending_review":
            continue
        case = by_case[attempt.case_id]
        instructions = next(
            (
                str(r.score.details.get("instructions") or "")
                for r in attempt.scores
                if r.score.details.get("pending_review")
            ),
            "",
        )
        items.append(
            {
                "case_id": attempt.case_id,
                "attempt": attempt.attempt,
                "input": _text(case.input if case.input is not None else case.vars),
                "expected": _text(case.expected),
                "output": attempt.output.text,
                "instructions": instructions or None,
            }
        )
    return items


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)


def _build_scorers(suite: ResolvedSuite) -> _Scorers:
    built = _Scorers()
    for index, spec in enumerate(suite.spec.scorers):
        try:
            info, fn = build_scorer(spec.name, spec.args)
        except UserError as exc:
            raise UserError(f"suite {suite.ref}, scorers[{index}]: {exc}") from None
        if info.kind == "dataset":
            if spec.threshold is not None:
                raise UserError(
                    f"suite {suite.ref}, scorers[{index}]: '{spec.name}' is a dataset metric; "
                    "set its bound in args ({min: 0.8} or {max: 12.5}), not with threshold"
                )
            built.dataset.append((info, fn, spec.threshold))  # type: ignore[arg-type]
        else:
            built.case.append((info, fn, spec.weight, spec.threshold))  # type: ignore[arg-type]
    return built


def _prompt_params(spec: PromptSpec) -> dict[str, Any]:
    params: dict[str, Any] = {
        "temperature": spec.temperature,
        "top_p": spec.top_p,
        "max_tokens": spec.max_tokens,
        "stop": spec.stop,
    }
    if spec.response_format is not None:
        params["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "response", "schema": spec.response_format},
        }
    return {k: v for k, v in params.items() if v is not None}


async def _call(
    client: Client,
    prompt: Prompt,
    case: Case,
    params: dict[str, Any],
    seed: int,
    timeout: float,
) -> Output:
    try:
        messages = prompt.render(**case.vars)
        async with asyncio.timeout(timeout):
            result = await client.chat(prompt.spec.model, messages, seed=seed, **params)
    except TimeoutError:
        return Output(text="", error=f"timed out after {timeout:g} s")
    except ReplayMiss:
        raise
    except LockgateError as exc:
        return Output(text="", error=f"{type(exc).__name__}: {exc}")
    usage = result.usage
    return Output(
        text=result.text,
        latency_ms=result.latency_s * 1000,
        cost_usd=result.cost.usd,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        tokens_estimated=usage.estimated,
        cached=result.cache == "hit",
        sources=case.context,
    )


async def _score(
    case: Case, attempt: int, output: Output, scorers: _Scorers, context: ScorerContext
) -> AttemptResult:
    if output.error is not None:
        return AttemptResult(case.id, attempt, output, [], "errored")
    records: list[ScoreRecord] = []
    for info, fn, weight, threshold in scorers.case:
        try:
            # A copy per call: concurrent attempts must not see each other's threshold.
            score = await fn(output, case, replace(context, threshold=threshold))
        except RuntimeFailure as exc:
            # A judge that cannot be reached says nothing about the output: errored.
            failed = replace(output, error=f"scorer {info.name}: {type(exc).__name__}: {exc}")
            return AttemptResult(case.id, attempt, failed, records, "errored")
        records.append(ScoreRecord(info.name, score, weight))
    return AttemptResult(case.id, attempt, output, records, verdict(records))


def _with_correctness(result: AttemptResult, prediction: Any, expected: Any) -> AttemptResult:
    correct = _same_label(prediction, expected)
    record = ScoreRecord(
        "correct",
        Score(1.0 if correct else 0.0, correct, None if correct else f"predicted {prediction!r}"),
    )
    status = result.status if correct else "failed"
    return replace(result, scores=[*result.scores, record], status=status)


def _same_label(prediction: Any, expected: Any) -> bool:
    """Labels compare as numbers when both are numeric (1 == 1.0 == True), else as text."""
    value = prediction.item() if hasattr(prediction, "item") else prediction
    if isinstance(value, int | float) and isinstance(expected, int | float):
        return float(value) == float(expected)
    return str(value).strip().lower() == str(expected).strip().lower()


def _dataset_scores(
    suite: ResolvedSuite, attempts: list[AttemptResult], scorers: _Scorers
) -> list[ScoreRecord]:
    by_case = {case.id: case for case in suite.cases}
    scored = [a for a in attempts if a.status != "errored"]
    outputs = [a.output for a in scored]
    cases = [by_case[a.case_id] for a in scored]
    records = []
    for info, fn, _threshold in scorers.dataset:
        if not outputs:
            records.append(ScoreRecord(info.name, Score(math.nan, False, "no scored outputs")))
            continue
        try:
            records.append(ScoreRecord(info.name, fn(outputs, cases)))
        except UserError as exc:
            # e.g. an LLM answer that is not a label: the metric fails, the run is kept.
            records.append(ScoreRecord(info.name, Score(math.nan, False, str(exc))))
    return records
