"""Every CLI command, its exit codes, and its errors (one line, exit 2, nothing written)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from lockgate.config import Settings
from lockgate.store import Store
from lockgate.store._tables import audit_events, versions
from tests.conftest import EXAMPLES
from tests.helpers import DESIGN_PROMPT, run_cli, write

pytestmark = pytest.mark.usefixtures("cli_env")

Capsys = pytest.CaptureFixture[str]


def prompt_file(directory: Path, version: int, temperature: float = 0.2) -> Path:
    text = DESIGN_PROMPT.replace("-v4", f"-v{version}").replace(
        "temperature: 0.2", f"temperature: {temperature}"
    )
    return write(directory, f"p{version}.yaml", text)


def row_count(settings: Settings, table: sa.Table) -> int:
    store = Store.open(settings)
    try:
        with store.read() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())
    finally:
        store.close()


def test_push_list_show(capsys: Capsys, tmp_path: Path) -> None:
    result = run_cli(capsys, "push", str(EXAMPLES / "support-triage"))
    assert result.code == 0, result.err
    assert "pushed    prompt   support-triage@4" in result.out
    again = run_cli(capsys, "push", str(EXAMPLES / "support-triage"))
    assert "unchanged prompt   support-triage@4" in again.out
    assert "0 new versions" in again.out

    listing = run_cli(capsys, "list")
    assert listing.code == 0
    assert "support-triage" in listing.out
    as_json = json.loads(run_cli(capsys, "list", "prompt", "--json").out)
    assert as_json[0]["name"] == "support-triage"
    assert as_json[0]["latest"] >= 4

    shown = run_cli(capsys, "show", "support-triage@4")
    assert "prompt support-triage@4" in shown.out
    assert "kb-support-2024q4" in shown.out
    detail = json.loads(run_cli(capsys, "show", "support-triage@4", "--json").out)
    assert detail["spec"]["retrieval"]["top_k"] == 5
    assert detail["author"] == "alice"


def test_label_diff_rollback_and_audit(capsys: Capsys, tmp_path: Path) -> None:
    run_cli(capsys, "push", str(prompt_file(tmp_path, 3, 0.7)), str(prompt_file(tmp_path, 4)))
    assert run_cli(capsys, "label", "set", "support-triage@3", "production").code == 0
    moved = run_cli(capsys, "label", "set", "support-triage@4", "production")
    assert "support-triage@production: 3 → 4" in moved.out
    labels = run_cli(capsys, "label", "list", "support-triage")
    assert "production" in labels.out and "alice" in labels.out

    diff = run_cli(capsys, "diff", "support-triage@3", "support-triage@production")
    assert diff.code == 1  # like diff(1): differences found
    assert "-  temperature: 0.7" in diff.out and "+  temperature: 0.2" in diff.out
    same = run_cli(capsys, "diff", "support-triage@4", "support-triage@production")
    assert (same.code, same.out.strip()) == (0, "identical")

    back = run_cli(capsys, "rollback", "support-triage", "--label", "production")
    assert back.code == 0
    assert "4 → 3" in back.out
    shown = json.loads(run_cli(capsys, "show", "support-triage@production", "--json").out)
    assert shown["version"] == 3

    log = run_cli(capsys, "audit", "log")
    assert "label.rollback" in log.out and "4 → 3" in log.out
    events = json.loads(run_cli(capsys, "audit", "log", "--json", "--action", "push").out)
    assert [e["action"] for e in events] == ["push", "push"]
    verified = run_cli(capsys, "audit", "verify")
    assert verified.code == 0
    assert "audit chain intact: 5 events" in verified.out


def test_audit_verify_catches_a_hand_edited_row(
    capsys: Capsys, tmp_path: Path, cli_env: Settings
) -> None:
    run_cli(capsys, "push", str(prompt_file(tmp_path, 1)), str(prompt_file(tmp_path, 2)))
    run_cli(capsys, "label", "set", "support-triage@1", "production")
    engine = sa.create_engine(cli_env.db_url)
    with engine.begin() as conn:
        conn.execute(sa.update(audit_events).where(audit_events.c.seq == 2).values(actor="eve"))
    engine.dispose()
    result = run_cli(capsys, "audit", "verify")
    assert result.code == 1
    assert "audit chain BROKEN at event #2: event #2 was edited" in result.err


def test_db_commands(capsys: Capsys) -> None:
    upgraded = run_cli(capsys, "db", "upgrade")
    assert upgraded.code == 0 and "database at revision 0004" in upgraded.out
    assert "up to date" in run_cli(capsys, "db", "current").out
    down = run_cli(capsys, "db", "downgrade", "base")
    assert down.code == 0 and "database at revision base" in down.out
    assert "database: empty  newest: 0004  (upgrade pending" in run_cli(capsys, "db", "current").out
    assert run_cli(capsys, "db", "upgrade").code == 0


@pytest.mark.parametrize(
    ("setup", "args", "message"),
    [
        (None, ["push", "{tmp}/bad.yaml"], "bad.yaml:2: malformed YAML"),
        (None, ["push", "{tmp}/unknown.yaml"], "unknown.yaml:11: field 'owner': unknown field"),
        (None, ["push", "{tmp}/absent.yaml"], "absent.yaml: no such file or directory"),
        (None, ["list", "widget"], "unknown kind 'widget'; kinds are: prompt, model"),
        ("push", ["show", "support-triage@@"], "is not a valid reference"),
        ("push", ["show", "support-triage@9"], "support-triage has no version 9"),
        ("push", ["push", "{tmp}/collide/p4.yaml"], "already exists with different content"),
        ("push", ["push", "{tmp}/dataset.yaml"], "'support-triage' is already a prompt"),
        ("push", ["label", "set", "support-triage@4", "latest"], "not a valid label"),
        ("push", ["rollback", "support-triage", "--label", "production"], "has no label"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    capsys: Capsys,
    tmp_path: Path,
    cli_env: Settings,
    setup: str | None,
    args: list[str],
    message: str,
) -> None:
    write(tmp_path, "bad.yaml", "prompt_id: x-v1\nmodel: [oops\n")
    write(tmp_path, "unknown.yaml", DESIGN_PROMPT + "owner: me\n")
    prompt_file(tmp_path / "collide", 4, temperature=1.1)
    (tmp_path / "d.jsonl").write_text("{}\n")
    write(tmp_path, "dataset.yaml", "dataset_id: support-triage-v9\nfile: d.jsonl\n")
    if setup:
        assert run_cli(capsys, "push", str(prompt_file(tmp_path, 4))).code == 0
    before = (row_count(cli_env, versions), row_count(cli_env, audit_events))

    result = run_cli(capsys, *(a.replace("{tmp}", str(tmp_path)) for a in args))
    assert result.code == 2, result
    assert message in result.err
    assert len(result.err.strip().splitlines()) == 1, result.err
    assert result.err.startswith("error: ")
    assert (row_count(cli_env, versions), row_count(cli_env, audit_events)) == before


def test_usage_errors_exit_2(capsys: Capsys) -> None:
    assert run_cli(capsys, "push").code == 2
    assert run_cli(capsys, "no-such-command").code == 2
    assert run_cli(capsys, "rollback", "x").code == 2  # --label missing


@pytest.mark.parametrize(
    "group",
    [
        [],
        ["push"],
        ["list"],
        ["show"],
        ["diff"],
        ["rollback"],
        ["label"],
        ["label", "set"],
        ["label", "list"],
        ["audit"],
        ["audit", "log"],
        ["audit", "verify"],
        ["db"],
        ["db", "upgrade"],
        ["db", "downgrade"],
        ["db", "current"],
        ["eval"],
        ["reproduce"],
        ["runs"],
        ["runs", "list"],
        ["runs", "show"],
        ["runs", "compare"],
        ["review"],
        ["review", "list"],
        ["review", "submit"],
        ["models"],
        ["models", "list"],
        ["models", "prepare"],
        ["chat"],
    ],
)
def test_every_command_explains_itself(capsys: Capsys, group: list[str]) -> None:
    result = run_cli(capsys, *group, "--help")
    assert result.code == 0
    assert "Usage: lockgate" in result.out
    assert len(result.out.splitlines()) > 4


def test_console_script_runs_as_a_process(tmp_path: Path, cli_env: Settings) -> None:
    exe = Path(sys.executable).parent / "lockgate"
    env = {**os.environ, "LOCKGATE_HOME": str(cli_env.home)}
    version = subprocess.run([exe, "--version"], capture_output=True, text=True, env=env)
    assert version.returncode == 0 and version.stdout.startswith("lockgate ")
    bad = subprocess.run([exe, "show", "nothing@1"], capture_output=True, text=True, env=env)
    assert bad.returncode == 2
    assert bad.stderr.strip() == "error: no artifact named 'nothing'; see: lockgate list"
