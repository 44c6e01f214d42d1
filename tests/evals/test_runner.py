"""The evaluation engine end to end against the scripted upstream over real sockets."""

from __future__ import annotations

import asyncio
import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from lockgate.config import Settings, load_settings
from lockgate.errors import InvalidArtifact, ReplayMiss, UserError
from lockgate.evals import RunOptions, RunStore, arun_suite, reproduce, resolve, run_suite
from lockgate.evals._review import refresh_run
from lockgate.evals._runner import EvalRunner
from lockgate.registry import Registry
from lockgate.testing import Rule, ScriptedUpstream
from tests.helpers import run_cli, write

TICKETS = {f"c{n:02d}": f"ticket {n} about my invoice" for n in range(1, 11)}

RULES = [
    Rule(match=r"^BAD ", reply="other"),  # prompt v2 prefixes BAD: every answer wrong
    Rule(match=r"ticket 9 ", reply="other", times=2),  # c09 wrong twice, then right: flaky
    Rule(match=r"ticket 10 ", status=500),  # c10 always errors
    Rule(match=r"hang", hang=True),
    Rule(match=None, reply="billing"),
]


@pytest.fixture(scope="module")
def upstream() -> Iterator[ScriptedUpstream]:
    with ScriptedUpstream(RULES) as up:
        yield up


@pytest.fixture
def eval_settings(settings: Settings, upstream: ScriptedUpstream) -> Settings:
    upstream.set_rules(RULES)
    upstream.reset()
    return settings.model_copy(
        update=load_settings(
            home=settings.home,
            database_url=settings.database_url,
            providers={
                "scripted": {
                    "type": "openai",
                    "base_url": upstream.url + "/v1",
                    "max_retries": 0,
                }
            },
            aliases={"house-model": "scripted/gpt-4o-mini-2024-07-18"},
        ).__dict__
    )


@pytest.fixture
def eval_registry(eval_settings: Settings) -> Iterator[Registry]:
    registry = Registry.open(eval_settings, actor="alice")
    yield registry
    registry.close()


def push_fixture_artifacts(registry: Registry, directory: Path, *, gate: str = "") -> None:
    write(directory, "p1.yaml", "prompt_id: triage-v1\nmodel: house-model\ntemperature: 0\n")
    write(
        directory,
        "p2.yaml",
        "prompt_id: triage-v2\nmodel: house-model\ntemperature: 0\ntemplate: 'BAD {{ input }}'\n",
    )
    rows = "".join(
        json.dumps({"id": cid, "input": text, "expected": "billing"}) + "\n"
        for cid, text in TICKETS.items()
    )
    (directory / "cases.jsonl").write_text(rows)
    write(
        directory,
        "suite.yaml",
        f"""\
        suite_id: triage-eval-v1
        target: triage@1
        dataset: cases.jsonl
        repeats: 3
        concurrency: 4
        scorers:
          - {{name: equals, args: {{ignore_case: true}}}}
        gate:
          pass_rate: ">= 0.7"
          {gate}
        """,
    )
    registry.push([directory])


def test_run_records_flaky_errored_and_gate(
    eval_registry: Registry, eval_settings: Settings, tmp_path: Path
) -> None:
    push_fixture_artifacts(eval_registry, tmp_path)
    seen: list[int] = []
    report = run_suite(
        "triage-eval-v1",
        settings=eval_settings,
        registry=eval_registry,
        on_progress=lambda p: seen.append(p.done),
    )
    assert seen == list(range(1, 31))
    by_case = {c.case_id: c for c in report.cases}
    assert by_case["c01"].status == "passed"
    assert by_case["c09"].flaky and by_case["c09"].pass_rate == pytest.approx(1 / 3)
    assert by_case["c10"].status == "errored"
    assert report.errored == 3
    # 8 cases pass 3/3, c09 1/3, c10 0/3 (errors count as failures): (8 + 1/3) / 10.
    assert report.pass_rate == pytest.approx(25 / 30)
    low, high = report.pass_rate_interval
    assert low < report.pass_rate < high
    assert report.gate_passed and report.status == "passed"
    assert any("too small to tell" in w for w in report.warnings)
    assert report.manifest["model"]["resolved"] == "scripted/gpt-4o-mini-2024-07-18"
    assert report.total_input_tokens > 0
    runs = RunStore(eval_registry.store)
    stored = runs.get(report.run_id)
    assert stored.status == "passed" and stored.gate_passed is True
    assert len(runs.attempts(report.run_id)) == 30


def test_repeats_get_distinct_seeds_and_errors_are_not_replayable(
    eval_registry: Registry, eval_settings: Settings, tmp_path: Path, upstream: ScriptedUpstream
) -> None:
    push_fixture_artifacts(eval_registry, tmp_path)
    first = run_suite("triage-eval@1", settings=eval_settings, registry=eval_registry)
    seeds = {r.body["seed"] for r in upstream.requests if r.body}
    assert seeds == {0, 1, 2}  # one seed per repeat, so repeats are distinct cache entries
    calls = len(upstream.requests)
    again = run_suite("triage-eval@1", settings=eval_settings, registry=eval_registry)
    # Successful calls come from the cache; only c10's errors (never cached) are retried.
    assert len(upstream.requests) - calls == 3
    assert again.pass_rate == first.pass_rate
    # A replay must not call the model: c10 was never recorded, so it fails loudly.
    with pytest.raises(ReplayMiss):
        run_suite("triage-eval@1", settings=eval_settings, registry=eval_registry, cache="replay")
    with pytest.raises(UserError, match="3 errored attempts; errors are never recorded"):
        reproduce(first.run_id, settings=eval_settings)


def test_reproduce_a_clean_run(
    eval_registry: Registry, eval_settings: Settings, tmp_path: Path
) -> None:
    push_fixture_artifacts(eval_registry, tmp_path)
    write(
        tmp_path,
        "s2.yaml",
        (tmp_path / "suite.yaml")
        .read_text()
        .replace("triage-eval-v1", "triage-eval-v2")
        .replace(
            "dataset: cases.jsonl",
            "cases: [{id: a, input: 'ticket 1 x', expected: billing},"
            " {id: b, input: 'ticket 2 y', expected: billing}]",
        ),
    )
    eval_registry.push([tmp_path / "s2.yaml"])
    original = run_suite("triage-eval@2", settings=eval_settings, registry=eval_registry)
    result = reproduce(original.run_id, settings=eval_settings)
    assert result.identical, result.differences
    assert result.compared == 6


def test_regression_against_production_fails_the_gate(
    eval_registry: Registry, eval_settings: Settings, tmp_path: Path
) -> None:
    push_fixture_artifacts(eval_registry, tmp_path, gate="no_regression_vs: production")
    eval_registry.set_label("triage@1", "production")
    first = run_suite("triage-eval@1", settings=eval_settings, registry=eval_registry)
    assert first.gate_passed  # the production version compared with itself
    worse = run_suite(
        "triage-eval@1", target="triage@2", settings=eval_settings, registry=eval_registry
    )
    assert worse.comparison is not None
    # c01..c08; c09 passed only 1 of 3 in the baseline and c10 errored in both.
    assert len(worse.comparison.newly_failing) == 8
    assert worse.comparison.p_value < 0.01
    assert worse.comparison.significant_regression
    failing = {g.name: g for g in worse.gate if not g.passed}
    assert "no_regression_vs production" in failing
    assert worse.status == "failed"


def test_interrupted_run_is_kept_incomplete(
    eval_registry: Registry, eval_settings: Settings, tmp_path: Path
) -> None:
    push_fixture_artifacts(eval_registry, tmp_path)
    cases = "".join(f"  - {{id: h{n}, input: 'hang {n}', expected: billing}}\n" for n in range(3))
    write(
        tmp_path,
        "hang.yaml",
        f"suite_id: hang-eval-v1\ntarget: triage@1\nconcurrency: 2\n"
        "scorers: [{name: equals}]\ncases:\n"
        f"  - {{id: ok, input: 'ticket 1 ', expected: billing}}\n{cases}",
    )
    eval_registry.push([tmp_path / "hang.yaml"])

    async def scenario() -> str:
        progressed = asyncio.Event()
        task = asyncio.create_task(
            arun_suite(
                "hang-eval@1",
                settings=eval_settings,
                registry=eval_registry,
                on_progress=lambda p: progressed.set(),
            )
        )
        await asyncio.wait_for(progressed.wait(), 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return RunStore(eval_registry.store).list(suite="hang-eval", limit=1)[0].id

    run_id = asyncio.run(scenario())
    run = RunStore(eval_registry.store).get(run_id)
    assert run.status == "incomplete"
    assert [a.case_id for a in RunStore(eval_registry.store).attempts(run_id)] == ["ok"]
    assert run.report is not None and "interrupted" in " ".join(run.report["warnings"])


def test_human_review_decides_the_gate(
    eval_registry: Registry, eval_settings: Settings, tmp_path: Path
) -> None:
    push_fixture_artifacts(eval_registry, tmp_path)
    write(
        tmp_path,
        "h.yaml",
        """\
        suite_id: human-eval-v1
        target: triage@1
        scorers: [{name: human, args: {instructions: "Is the category right?"}}]
        cases:
          - {id: a, input: ticket 1 x, expected: billing}
          - {id: b, input: ticket 2 y, expected: billing}
        gate: {pass_rate: ">= 1"}
        """,
    )
    eval_registry.push([tmp_path / "h.yaml"])
    report = run_suite("human-eval@1", settings=eval_settings, registry=eval_registry)
    assert report.status == "awaiting_review"
    assert not report.gate_passed
    runs = RunStore(eval_registry.store)
    items = runs.reviews(run_id=report.run_id, status="pending")
    assert [(i.case_id, i.instructions) for i in items] == [
        ("a", "Is the category right?"),
        ("b", "Is the category right?"),
    ]
    runs.submit_review(items[0].id, passed=True, score=None, comment="right", reviewer="bob")
    assert refresh_run(eval_registry, report.run_id).status == "awaiting_review"
    runs.submit_review(items[1].id, passed=True, score=0.9, comment=None, reviewer="bob")
    decided = refresh_run(eval_registry, report.run_id)
    assert decided.status == "passed" and decided.gate_passed
    assert runs.get(report.run_id).status == "passed"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "scorers: [{name: equals, args: {colour: red}}]\ncases: [{id: a, input: x}]\n",
            "bad.yaml:3: field 'scorers[0].args': scorer 'equals': got an unexpected keyword",
        ),
        (
            "scorers: [{name: equalz}]\ncases: [{id: a, input: x}]\n",
            "bad.yaml:3: field 'scorers[0]': unknown scorer 'equalz'; known scorers:",
        ),
        (
            "scorers: [{name: equals}]\ncases: [{id: a}, {id: a}]\n",
            "bad.yaml:4: field 'cases': cases[1]: case id 'a' is used twice",
        ),
    ],
)
def test_a_suite_that_cannot_run_is_refused_at_push(
    eval_registry: Registry, tmp_path: Path, body: str, message: str
) -> None:
    write(tmp_path, "bad.yaml", f"suite_id: bad-eval-v1\ntarget: triage@1\n{body}")
    with pytest.raises(InvalidArtifact) as info:
        eval_registry.push([tmp_path / "bad.yaml"])
    assert message in str(info.value)


def test_a_prompt_without_a_suite_is_not_runnable(eval_registry: Registry, tmp_path: Path) -> None:
    push_fixture_artifacts(eval_registry, tmp_path)
    with pytest.raises(UserError, match="is a prompt without an eval_suite field"):
        resolve(eval_registry, "triage@1")


def test_cli_eval_exit_codes_and_reports(
    capsys: pytest.CaptureFixture[str],
    eval_registry: Registry,
    eval_settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    push_fixture_artifacts(eval_registry, tmp_path)
    config = tmp_path / "lockgate.yaml"
    config.write_text(
        json.dumps(
            {
                "providers": {"scripted": eval_settings.providers["scripted"].model_dump()},
                "aliases": dict(eval_settings.aliases),
            }
        )
    )
    monkeypatch.setenv("LOCKGATE_CONFIG", str(config))
    monkeypatch.setenv("LOCKGATE_HOME", str(eval_settings.home))
    if eval_settings.database_url:
        monkeypatch.setenv("LOCKGATE_DATABASE_URL", eval_settings.database_url)
    result = run_cli(
        capsys,
        "eval",
        "triage-eval-v1",
        "--quiet",
        "--junit",
        str(tmp_path / "j.xml"),
        "--html",
        str(tmp_path / "r.html"),
        "--json",
        str(tmp_path / "r.json"),
    )
    assert result.code == 0, result.err
    assert "pass_rate" in result.out
    suite = ET.parse(tmp_path / "j.xml").getroot().find("testsuite")
    assert suite is not None and suite.get("tests") == "11"  # 10 cases + the gate
    page = (tmp_path / "r.html").read_text()
    assert "triage-eval@1" in page and "c09" in page and "flaky" in page
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["status"] == "passed"

    failing = run_cli(capsys, "eval", "triage-eval@1", "--target", "triage@2", "--quiet")
    assert failing.code == 1
    listed = run_cli(capsys, "runs", "list")
    assert listed.out.count("triage-eval@1") == 2
    run_id = data["run_id"]
    shown = run_cli(capsys, "runs", "show", run_id[:10])
    assert shown.code == 0 and "pass_rate" in shown.out
    compared = run_cli(
        capsys,
        "runs",
        "compare",
        run_id,
        json.loads(run_cli(capsys, "runs", "list", "--json").out)[0]["id"],
    )
    assert compared.code == 1 and "significant regression" in compared.out
    usage = run_cli(capsys, "eval", "triage-eval@1", "--replay", "--no-cache")
    assert usage.code == 2
    missing = run_cli(capsys, "eval", "nope-eval@1")
    assert missing.code == 2 and "no artifact named 'nope-eval'" in missing.err


def test_run_options_override_the_suite(
    eval_registry: Registry, eval_settings: Settings, tmp_path: Path
) -> None:
    push_fixture_artifacts(eval_registry, tmp_path)
    resolved = resolve(eval_registry, "triage-eval@1")
    runner = EvalRunner(eval_registry, eval_settings)
    report = asyncio.run(runner.run(resolved, RunOptions(repeats=1, concurrency=8)))
    assert report.attempts == 10
    assert report.repeats == 1


def test_cli_review_and_reproduce(
    capsys: pytest.CaptureFixture[str],
    eval_registry: Registry,
    eval_settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    push_fixture_artifacts(eval_registry, tmp_path)
    write(
        tmp_path,
        "h.yaml",
        """\
        suite_id: human-eval-v1
        target: triage@1
        scorers: [{name: equals}, {name: human, args: {instructions: "Polite?"}}]
        cases: [{id: a, input: ticket 1 x, expected: billing}]
        """,
    )
    eval_registry.push([tmp_path / "h.yaml"])
    config = tmp_path / "lockgate.yaml"
    config.write_text(
        json.dumps(
            {
                "providers": {"scripted": eval_settings.providers["scripted"].model_dump()},
                "aliases": dict(eval_settings.aliases),
            }
        )
    )
    monkeypatch.setenv("LOCKGATE_CONFIG", str(config))
    monkeypatch.setenv("LOCKGATE_HOME", str(eval_settings.home))
    monkeypatch.setenv("LOCKGATE_USER", "reviewer-bob")
    if eval_settings.database_url:
        monkeypatch.setenv("LOCKGATE_DATABASE_URL", eval_settings.database_url)

    waiting = run_cli(capsys, "eval", "human-eval@1", "--quiet")
    assert waiting.code == 1 and "awaiting human review" in waiting.err
    listed = run_cli(capsys, "review", "list")
    assert "case a attempt 0 [pending]" in listed.out and "Polite?" in listed.out
    item_id = json.loads(run_cli(capsys, "review", "list", "--json").out)[0]["id"]
    submitted = run_cli(capsys, "review", "submit", str(item_id), "--pass", "--comment", "ok")
    assert submitted.code == 0 and "is now passed (0 left to review)" in submitted.out
    assert run_cli(capsys, "review", "list").out.strip() == "Nothing to review."
    missing = run_cli(capsys, "review", "submit", "999", "--fail")
    assert missing.code == 2 and "no review item #999" in missing.err

    [run] = json.loads(run_cli(capsys, "runs", "list", "--json").out)
    replayed = run_cli(capsys, "reproduce", run["id"][:8])
    assert replayed.code == 0, replayed.err
    assert "every score identical" in replayed.out
