"""A pytest plugin so an evaluation suite can gate inside an existing test run.

Installed with lockgate (entry point ``pytest11``); use the ``lockgate_suite`` fixture::

    def test_triage_prompt_passes_its_gate(lockgate_suite):
        report = lockgate_suite("support-triage-eval@4")
        assert report.pass_rate > 0.9   # the fixture already failed the test if the gate did

Options: ``--lockgate-replay`` answers only from recorded responses (CI without model
access), ``--lockgate-no-cache`` calls the model for every attempt.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # imported lazily: this plugin loads in every pytest session
    from lockgate.evals import RunReport


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("lockgate")
    group.addoption(
        "--lockgate-replay",
        action="store_true",
        help="lockgate suites answer only from recorded responses (fail on a miss)",
    )
    group.addoption(
        "--lockgate-no-cache",
        action="store_true",
        help="lockgate suites call the model for every attempt",
    )


def describe_failure(report: RunReport) -> str:
    """A readable explanation of why a gate did not pass."""
    head = f"lockgate gate {report.status}: {report.suite} on {report.target}"
    lines = [f"{head} (run {report.run_id[:12]})"]
    lines += [f"  ✗ {check.detail}" for check in report.gate if not check.passed]
    failing = [c.case_id for c in report.cases if c.status in ("failed", "errored")]
    if failing:
        lines.append(f"  failing cases: {', '.join(failing[:20])}")
    lines += [f"  ! {warning}" for warning in report.warnings]
    return "\n".join(lines)


@pytest.fixture
def lockgate_suite(request: pytest.FixtureRequest) -> Callable[..., RunReport]:
    """Run a suite; fail the test (with the failing checks) when its gate does not pass.

    Call it with ``check=False`` to get the report without asserting.
    """
    cache = None
    if request.config.getoption("--lockgate-replay"):
        cache = "replay"
    elif request.config.getoption("--lockgate-no-cache"):
        cache = "off"

    def run(ref: str, *, check: bool = True, **kwargs: Any) -> RunReport:
        from lockgate.evals import run_suite

        kwargs.setdefault("cache", cache)
        report = run_suite(ref, **kwargs)
        if check and not report.gate_passed:
            pytest.fail(describe_failure(report), pytrace=False)
        return report

    return run
