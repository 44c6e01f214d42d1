"""The registry on real SQLite and real PostgreSQL."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import sqlalchemy as sa

from lockgate.errors import (
    BadReference,
    InvalidArtifact,
    KindMismatch,
    NotFound,
    TemplateError,
    VersionConflict,
)
from lockgate.governance import AuditLog
from lockgate.registry import Registry
from lockgate.store._tables import artifacts, audit_events, versions
from tests.helpers import DESIGN_PROMPT, write


def counts(registry: Registry) -> tuple[int, int, int]:
    with registry.store.read() as conn:
        return tuple(  # type: ignore[return-value]
            conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
            for t in (artifacts, versions, audit_events)
        )


def prompt(version: int, temperature: float = 0.2, name: str = "support-triage") -> str:
    return DESIGN_PROMPT.replace("support-triage-v4", f"{name}-v{version}").replace(
        "temperature: 0.2", f"temperature: {temperature}"
    )


def test_push_registers_then_repush_is_a_noop(registry: Registry, tmp_path: Path) -> None:
    path = write(tmp_path, "p.yaml", DESIGN_PROMPT)
    [first] = registry.push([path]).results
    assert (first.ref, first.status, first.kind) == ("support-triage@4", "created", "prompt")
    [again] = registry.push([path]).results
    assert again.status == "unchanged"
    assert again.digest == first.digest
    assert counts(registry) == (1, 1, 1)


def test_changed_content_under_existing_version_is_refused_with_both_hashes(
    registry: Registry, tmp_path: Path
) -> None:
    [original] = registry.push([write(tmp_path, "p.yaml", prompt(4))]).results
    changed = write(tmp_path, "p.yaml", prompt(4, temperature=0.9))
    with pytest.raises(VersionConflict) as info:
        registry.push([changed])
    message = str(info.value)
    assert "support-triage@4" in message
    assert original.digest in message
    assert "-v5" in message
    assert counts(registry) == (1, 1, 1)


def test_one_bad_file_in_a_batch_writes_nothing(registry: Registry, tmp_path: Path) -> None:
    write(tmp_path / "batch", "a.yaml", prompt(1, name="alpha"))
    write(tmp_path / "batch", "b.yaml", prompt(1, name="beta") + "colour: blue\n")
    with pytest.raises(InvalidArtifact, match=r"b.yaml:11: field 'colour'"):
        registry.push([tmp_path / "batch"])
    assert counts(registry) == (0, 0, 0)


def test_a_conflict_late_in_a_batch_rolls_back_the_earlier_files(
    registry: Registry, tmp_path: Path
) -> None:
    registry.push([write(tmp_path, "z.yaml", prompt(1, name="zeta"))])
    write(tmp_path / "batch", "a.yaml", prompt(1, name="alpha"))
    write(tmp_path / "batch", "z.yaml", prompt(1, name="zeta", temperature=1.5))
    with pytest.raises(VersionConflict):
        registry.push([tmp_path / "batch"])
    assert [s.name for s in registry.list()] == ["zeta"]
    assert counts(registry) == (1, 1, 1)


def test_directory_push_recurses_and_skips_non_artifacts(
    registry: Registry, tmp_path: Path
) -> None:
    write(tmp_path, "a/p.yaml", prompt(1))
    write(tmp_path, "a/b/p2.yml", prompt(2))
    write(tmp_path, "a/lockgate.yaml", "home: .lockgate\n")
    write(tmp_path, "a/notes.yaml", "title: not an artifact\n")
    report = registry.push([tmp_path / "a"])
    assert sorted(r.ref for r in report.created) == ["support-triage@1", "support-triage@2"]
    assert sorted(p.name for p in report.skipped) == ["lockgate.yaml", "notes.yaml"]


def test_explicit_non_artifact_and_missing_path_are_errors(
    registry: Registry, tmp_path: Path
) -> None:
    with pytest.raises(InvalidArtifact, match="not an artifact"):
        registry.push([write(tmp_path, "notes.yaml", "title: x\n")])
    with pytest.raises(InvalidArtifact, match="no such file or directory"):
        registry.push([tmp_path / "absent.yaml"])


def test_same_version_twice_in_one_batch(registry: Registry, tmp_path: Path) -> None:
    write(tmp_path / "d", "a.yaml", prompt(1))
    write(tmp_path / "d", "b.yaml", prompt(1))
    assert len(registry.push([tmp_path / "d"]).results) == 1
    write(tmp_path / "e", "a.yaml", prompt(2))
    write(tmp_path / "e", "b.yaml", prompt(2, temperature=1.0))
    with pytest.raises(VersionConflict, match="defined twice"):
        registry.push([tmp_path / "e"])


def test_a_name_belongs_to_one_kind(registry: Registry, tmp_path: Path) -> None:
    registry.push([write(tmp_path, "p.yaml", prompt(1, name="shared"))])
    (tmp_path / "data.jsonl").write_text("{}\n")
    dataset = write(tmp_path, "d.yaml", "dataset_id: shared-v2\nfile: data.jsonl\n")
    with pytest.raises(KindMismatch, match="already a prompt"):
        registry.push([dataset])


def test_one_name_cannot_be_two_kinds_in_one_batch(registry: Registry, tmp_path: Path) -> None:
    (tmp_path / "d.jsonl").write_text("{}\n")
    write(tmp_path / "b", "a.yaml", prompt(1, name="foo"))
    write(tmp_path / "b", "b.yaml", "dataset_id: foo-v2\nfile: ../d.jsonl\n")
    with pytest.raises(
        KindMismatch, match=r"'foo' is a (prompt|dataset) in .* and a (dataset|prompt) in"
    ):
        registry.push([tmp_path / "b"])
    assert counts(registry) == (0, 0, 0)


def test_pushing_again_heals_a_corrupted_blob(registry: Registry, tmp_path: Path) -> None:
    (tmp_path / "d.jsonl").write_text('{"input": "a"}\n')
    descriptor = write(tmp_path, "d.yaml", "dataset_id: tickets-v1\nfile: d.jsonl\n")
    registry.push([descriptor])
    blob = registry.get("tickets@1").files["file"]
    registry.store.blobs.path_for(blob.sha256).write_bytes(b"tampered")
    assert not registry.store.blobs.verify(blob.sha256)
    [result] = registry.push([descriptor]).results
    assert result.status == "unchanged"
    assert registry.store.blobs.read_bytes(blob.sha256) == b'{"input": "a"}\n'


def test_blobs_are_stored_and_verified(registry: Registry, tmp_path: Path) -> None:
    (tmp_path / "model.skops").write_bytes(b"weights" * 1000)
    descriptor = write(
        tmp_path,
        "m.yaml",
        """\
        model_id: fraud-v3
        flavor: sklearn
        format: skops
        file: model.skops
        task: classification
        label: is_fraud
        features: {amount: float, hour: int}
        """,
    )
    registry.push([descriptor])
    version = registry.get("fraud@3")
    blob = version.files["file"]
    assert registry.store.blobs.read_bytes(blob.sha256) == b"weights" * 1000
    assert blob.size == 7000


def test_references_resolve(registry: Registry, tmp_path: Path) -> None:
    registry.push([write(tmp_path, "a.yaml", prompt(3)), write(tmp_path, "b.yaml", prompt(4))])
    registry.set_label("support-triage@3", "production")
    assert registry.get("support-triage@3").version == 3
    assert registry.get("support-triage@v4").version == 4
    assert registry.get("support-triage@latest").version == 4
    assert registry.get("support-triage").version == 4
    assert registry.get("support-triage@production").version == 3
    with pytest.raises(NotFound, match="no version 9"):
        registry.get("support-triage@9")
    with pytest.raises(NotFound, match="no label 'staging'"):
        registry.get("support-triage@staging")
    with pytest.raises(NotFound, match="no artifact named 'nope'"):
        registry.get("nope@1")
    with pytest.raises(BadReference):
        registry.get("bad name@1")


def test_labels_move_and_roll_back_like_a_stack(registry: Registry, tmp_path: Path) -> None:
    registry.push([write(tmp_path, f"{v}.yaml", prompt(v)) for v in (1, 2, 3)])
    assert registry.set_label("support-triage@1", "production").action == "set"
    registry.set_label("support-triage@2", "production")
    registry.set_label("support-triage@3", "production")
    assert registry.set_label("support-triage@3", "production").action == "unchanged"

    move = registry.rollback("support-triage", "production")
    assert (move.from_version, move.to_version) == (3, 2)
    assert registry.rollback("support-triage", "production").to_version == 1
    with pytest.raises(NotFound, match="no earlier version"):
        registry.rollback("support-triage", "production")
    assert registry.get("support-triage@production").version == 1
    with pytest.raises(NotFound, match="has no label 'dev'"):
        registry.rollback("support-triage", "dev")
    assert [(s.label, s.version, s.updated_by) for s in registry.labels("support-triage")] == [
        ("production", 1, "alice")
    ]


def test_invalid_label_names_are_refused(registry: Registry, tmp_path: Path) -> None:
    registry.push([write(tmp_path, "p.yaml", prompt(1))])
    for label in ("latest", "1", "has space", "", "v5", "V12"):
        with pytest.raises(BadReference):
            registry.set_label("support-triage@1", label)


def test_list_and_diff(registry: Registry, tmp_path: Path) -> None:
    registry.push([write(tmp_path, "a.yaml", prompt(3)), write(tmp_path, "b.yaml", prompt(4, 0.7))])
    registry.set_label("support-triage@4", "staging")
    [summary] = registry.list("prompt")
    assert (summary.name, summary.latest, summary.versions) == ("support-triage", 4, 2)
    assert summary.labels == {"staging": 4}
    assert registry.list("model") == []
    with pytest.raises(InvalidArtifact, match="unknown kind 'widget'"):
        registry.list("widget")
    text = registry.diff("support-triage@3", "support-triage@4")
    assert "-  temperature: 0.2\n+  temperature: 0.7\n" in text
    assert registry.diff("support-triage@4", "support-triage@staging") == ""


def test_lineage_records_author_source_and_git_commit(registry: Registry, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.email=t@x", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], check=True)
    path = write(repo, "p.yaml", prompt(1))
    subprocess.run([*git, "add", "p.yaml"], check=True)
    subprocess.run([*git, "commit", "-qm", "add prompt"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
    registry.push([path])
    version = registry.get("support-triage@1")
    assert version.git_commit == head.stdout.strip()
    assert version.git_dirty is False
    assert version.author == "alice"
    assert version.source_path == str(path.resolve())

    outside = write(tmp_path / "plain", "p.yaml", prompt(2))
    registry.push([outside])
    assert registry.get("support-triage@2").git_commit is None


def test_load_prompt_renders_messages(registry: Registry, tmp_path: Path) -> None:
    templated = DESIGN_PROMPT + "template: |\n  Ticket from {{ customer }}:\n  {{ body }}\n"
    registry.push([write(tmp_path, "p.yaml", templated)])
    loaded = registry.load_prompt("support-triage@4")
    assert loaded.variables == {"customer", "body"}
    messages = loaded.render(customer="ACME", body="I was charged twice")
    assert messages[0]["role"] == "system"
    assert messages[0]["content"].startswith("You are a support triage assistant.")
    assert messages[1] == {"role": "user", "content": "Ticket from ACME:\nI was charged twice"}
    with pytest.raises(TemplateError, match="'body' is undefined"):
        loaded.render(customer="ACME")


def test_prompt_without_template_takes_input(registry: Registry, tmp_path: Path) -> None:
    registry.push([write(tmp_path, "p.yaml", DESIGN_PROMPT)])
    loaded = registry.load_prompt("support-triage@latest")
    assert loaded.render(input="hello")[-1] == {"role": "user", "content": "hello"}
    with pytest.raises(TemplateError, match="pass input="):
        loaded.render()


def test_templates_are_sandboxed(registry: Registry, tmp_path: Path) -> None:
    evil = DESIGN_PROMPT + "template: \"{{ ''.__class__.__mro__[1].__subclasses__() }}\"\n"
    registry.push([write(tmp_path, "p.yaml", evil)])
    with pytest.raises(TemplateError, match=r"unsafe|undefined"):
        registry.load_prompt("support-triage@4").render()


def test_load_prompt_refuses_other_kinds(registry: Registry, tmp_path: Path) -> None:
    (tmp_path / "d.jsonl").write_text("{}\n")
    registry.push([write(tmp_path, "d.yaml", "dataset_id: tickets-v1\nfile: d.jsonl\n")])
    with pytest.raises(KindMismatch, match="is a dataset, not a prompt"):
        registry.load_prompt("tickets@1")


def test_every_mutation_is_audited(registry: Registry, tmp_path: Path) -> None:
    registry.push([write(tmp_path, "a.yaml", prompt(1)), write(tmp_path, "b.yaml", prompt(2))])
    registry.set_label("support-triage@1", "production")
    registry.set_label("support-triage@2", "production")
    registry.rollback("support-triage", "production")
    log = AuditLog(registry.store)
    actions = [(e.action, e.target, e.actor) for e in reversed(log.events())]
    assert actions == [
        ("push", "support-triage@1", "alice"),
        ("push", "support-triage@2", "alice"),
        ("label.set", "support-triage@production", "alice"),
        ("label.set", "support-triage@production", "alice"),
        ("label.rollback", "support-triage@production", "alice"),
    ]
    assert log.verify().ok
