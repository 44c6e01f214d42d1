"""Ctrl-C during `lockgate eval` stops cleanly and keeps the partial run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from lockgate.config import load_settings
from lockgate.evals import RunStore
from lockgate.registry import Registry
from lockgate.testing import Rule, ScriptedUpstream
from tests.helpers import write


def test_sigint_marks_the_run_incomplete_and_exits_130(tmp_path: Path) -> None:
    rules = [Rule(match=r"^quick", reply="ok"), Rule(match=r"^slow", hang=True)]
    with ScriptedUpstream(rules) as up:
        write(
            tmp_path,
            "lockgate.yaml",
            f"""\
            home: home
            providers:
              up: {{type: openai, base_url: "{up.url}/v1", max_retries: 0}}
            """,
        )
        write(tmp_path, "p.yaml", "prompt_id: p-v1\nmodel: up/gpt-4o-mini-2024-07-18\n")
        cases = "".join(f"  - {{id: s{n}, input: slow {n}, expected: ok}}\n" for n in range(4))
        write(
            tmp_path,
            "s.yaml",
            "suite_id: s-eval-v1\ntarget: p@1\nconcurrency: 1\nscorers: [{name: equals}]\n"
            f"cases:\n  - {{id: q1, input: quick 1, expected: ok}}\n{cases}",
        )
        settings = load_settings(cwd=tmp_path)
        registry = Registry.open(settings, actor="t")
        registry.push([tmp_path / "p.yaml", tmp_path / "s.yaml"])
        registry.close()

        process = subprocess.Popen(
            [Path(sys.executable).parent / "lockgate", "eval", "s-eval@1", "--quiet"],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={k: v for k, v in os.environ.items() if not k.startswith("LOCKGATE_")},
        )
        deadline = time.monotonic() + 30
        while not any(r.body and "slow" in str(r.body) for r in up.requests):
            assert time.monotonic() < deadline, "the run never reached the hanging case"
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)

    assert process.returncode == 130, err
    assert "interrupted" in err
    assert "Traceback" not in err
    registry = Registry.open(settings, actor="t")
    try:
        runs = RunStore(registry.store)
        [run] = runs.list()
        assert run.status == "incomplete"
        assert [a.case_id for a in runs.attempts(run.id)] == ["q1"]
    finally:
        registry.close()
