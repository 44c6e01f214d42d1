"""The artifact registry: immutable versions, movable labels, lineage, audit events."""

from __future__ import annotations

import builtins
import difflib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
import yaml

from lockgate.config import Settings, load_settings
from lockgate.errors import InvalidArtifact, KindMismatch, NotFound, Problem, VersionConflict
from lockgate.governance import append_event
from lockgate.registry._kinds import KINDS
from lockgate.registry._loader import LoadedArtifact, collect, load_all
from lockgate.registry._prompt import Prompt, PromptSpec
from lockgate.registry._refs import LATEST, Ref, check_label
from lockgate.store import BlobRef, Store
from lockgate.store._tables import artifacts, as_utc, label_events, labels, versions


@dataclass(frozen=True)
class ArtifactVersion:
    """One immutable version of an artifact."""

    kind: str
    name: str
    version: int
    digest: str
    spec: dict[str, Any]
    files: dict[str, BlobRef]
    author: str
    created_at: datetime
    source_path: str | None
    git_commit: str | None
    git_dirty: bool | None
    labels: tuple[str, ...] = ()

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def canonical_yaml(self) -> str:
        """The version's canonical content as YAML (what `diff` compares)."""
        files = {k: {"sha256": v.sha256, "size": v.size} for k, v in sorted(self.files.items())}
        body = {"kind": self.kind, "spec": self.spec, "files": files}
        return yaml.dump(body, Dumper=_BlockDumper, sort_keys=True, allow_unicode=True)


@dataclass(frozen=True)
class ArtifactSummary:
    kind: str
    name: str
    versions: int
    latest: int
    labels: dict[str, int]
    updated_at: datetime


@dataclass(frozen=True)
class PushResult:
    ref: str
    kind: str
    digest: str
    status: Literal["created", "unchanged"]
    source: Path


@dataclass
class PushReport:
    results: list[PushResult] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)

    @property
    def created(self) -> list[PushResult]:
        return [r for r in self.results if r.status == "created"]


@dataclass(frozen=True)
class LabelMove:
    name: str
    label: str
    from_version: int | None
    to_version: int
    action: Literal["set", "rollback", "unchanged"]


@dataclass(frozen=True)
class LabelState:
    label: str
    version: int
    updated_at: datetime
    updated_by: str


class Registry:
    """Push, look up, label and roll back artifact versions.

    Example:
        >>> registry = Registry.open()
        >>> registry.push([Path("examples/support-triage")])
        >>> registry.set_label("support-triage@4", "production")
    """

    def __init__(self, store: Store, actor: str) -> None:
        self.store = store
        self.actor = actor

    @classmethod
    def open(cls, settings: Settings | None = None, *, actor: str | None = None) -> Registry:
        settings = settings or load_settings()
        return cls(Store.open(settings), actor or settings.user or _os_user())

    # -- writing -------------------------------------------------------------------

    def push(self, paths: Sequence[Path | str]) -> PushReport:
        """Register every artifact file under `paths` in one transaction.

        Identical content is a no-op; different content under an existing version is a
        `VersionConflict`, and then nothing at all is written.
        """
        found, problems = collect([Path(p) for p in paths])
        if problems:
            raise InvalidArtifact(problems)
        loaded = _dedupe(load_all(found.files))
        report = PushReport(skipped=found.skipped)
        now = _now()
        with self.store.write() as conn:
            new: list[LoadedArtifact] = []
            for item in loaded:
                status = self._check_existing(conn, item)
                report.results.append(
                    PushResult(item.ref, item.kind.name, item.digest, status, item.source)
                )
                if status == "created":
                    new.append(item)
            created = {id(item) for item in new}
            for item in loaded:
                for field, (source, expected) in item.files.items():
                    if id(item) in created or not self.store.blobs.verify(expected.sha256):
                        # Also heals a missing or corrupted blob of an unchanged version.
                        stored = self.store.blobs.put_file(source)
                        if stored != expected:
                            raise VersionConflict(
                                f"{source}: changed while it was being pushed (field "
                                f"'{field}' hashed {expected.sha256}, then {stored.sha256}); "
                                "push again"
                            )
            for item in new:
                self._insert(conn, item, now)
        return report

    def set_label(self, ref: str, label: str) -> LabelMove:
        """Point `label` at the version `ref` resolves to (audited)."""
        check_label(label)
        with self.store.write() as conn:
            target = self._resolve(conn, Ref.parse(ref))
            current = self._label_row(conn, target.artifact_id, label)
            if current is not None and current.version_id == target.id:
                return LabelMove(target.name, label, target.version, target.version, "unchanged")
            from_version = self._version_number(conn, current.version_id) if current else None
            self._move(conn, target.artifact_id, label, current, target.id, "set")
            append_event(
                conn,
                actor=self.actor,
                action="label.set",
                target=f"{target.name}@{label}",
                before={"version": from_version} if current else None,
                after={"version": target.version, "digest": target.digest},
            )
        return LabelMove(target.name, label, from_version, target.version, "set")

    def rollback(self, name: str, label: str) -> LabelMove:
        """Move `label` back to the version it pointed to before its last move (audited)."""
        check_label(label)
        with self.store.write() as conn:
            artifact = self._artifact(conn, name)
            current = self._label_row(conn, artifact.id, label)
            if current is None:
                raise NotFound(f"{name} has no label '{label}'; see: lockgate label list {name}")
            stack: list[int] = []
            for event in conn.execute(
                sa.select(label_events.c.action, label_events.c.to_version_id)
                .where(label_events.c.artifact_id == artifact.id, label_events.c.label == label)
                .order_by(label_events.c.id)
            ):
                if event.action == "set":
                    stack.append(event.to_version_id)
                elif stack:
                    stack.pop()
            if len(stack) < 2:
                raise NotFound(
                    f"{name}@{label} has no earlier version to roll back to; "
                    f"set it explicitly with: lockgate label set {name}@VERSION {label}"
                )
            target_id = stack[-2]
            from_version = self._version_number(conn, current.version_id)
            to_version = self._version_number(conn, target_id)
            self._move(conn, artifact.id, label, current, target_id, "rollback")
            append_event(
                conn,
                actor=self.actor,
                action="label.rollback",
                target=f"{name}@{label}",
                before={"version": from_version},
                after={"version": to_version},
            )
        return LabelMove(name, label, from_version, to_version, "rollback")

    # -- reading -------------------------------------------------------------------

    def get(self, ref: str) -> ArtifactVersion:
        """The version `ref` resolves to (``name@4``, ``name@production``, ``name@latest``)."""
        with self.store.read() as conn:
            row = self._resolve(conn, Ref.parse(ref))
            return self._to_version(conn, row)

    def versions(self, name: str) -> list[ArtifactVersion]:
        """Every version of `name`, oldest first."""
        with self.store.read() as conn:
            artifact = self._artifact(conn, name)
            rows = conn.execute(
                _version_query()
                .where(versions.c.artifact_id == artifact.id)
                .order_by(versions.c.version)
            ).all()
            return [self._to_version(conn, row) for row in rows]

    def list(self, kind: str | None = None) -> list[ArtifactSummary]:
        """One summary per artifact, optionally of one kind, sorted by kind then name."""
        if kind is not None and kind not in KINDS:
            raise InvalidArtifact(
                [Problem(f"unknown kind '{kind}'; kinds are: {', '.join(KINDS)}")]
            )
        query = (
            sa.select(
                artifacts.c.id,
                artifacts.c.kind,
                artifacts.c.name,
                sa.func.count(versions.c.id).label("n_versions"),
                sa.func.max(versions.c.version).label("latest"),
                sa.func.max(versions.c.created_at).label("updated_at"),
            )
            .join(versions, versions.c.artifact_id == artifacts.c.id)
            .group_by(artifacts.c.id, artifacts.c.kind, artifacts.c.name)
            .order_by(artifacts.c.kind, artifacts.c.name)
        )
        if kind is not None:
            query = query.where(artifacts.c.kind == kind)
        with self.store.read() as conn:
            rows = conn.execute(query).all()
            label_rows = conn.execute(
                sa.select(labels.c.artifact_id, labels.c.label, versions.c.version).join(
                    versions, versions.c.id == labels.c.version_id
                )
            ).all()
        by_artifact: dict[int, dict[str, int]] = {}
        for lrow in label_rows:
            by_artifact.setdefault(lrow.artifact_id, {})[lrow.label] = lrow.version
        return [
            ArtifactSummary(
                row.kind,
                row.name,
                row.n_versions,
                row.latest,
                dict(sorted(by_artifact.get(row.id, {}).items())),
                as_utc(row.updated_at),
            )
            for row in rows
        ]

    def labels(self, name: str) -> builtins.list[LabelState]:
        with self.store.read() as conn:
            artifact = self._artifact(conn, name)
            rows = conn.execute(
                sa.select(labels, versions.c.version)
                .join(versions, versions.c.id == labels.c.version_id)
                .where(labels.c.artifact_id == artifact.id)
                .order_by(labels.c.label)
            ).all()
        return [LabelState(r.label, r.version, as_utc(r.updated_at), r.updated_by) for r in rows]

    def diff(self, ref_a: str, ref_b: str) -> str:
        """Unified diff of the canonical YAML of two versions ('' when identical)."""
        a, b = self.get(ref_a), self.get(ref_b)
        return "".join(
            difflib.unified_diff(
                a.canonical_yaml().splitlines(keepends=True),
                b.canonical_yaml().splitlines(keepends=True),
                fromfile=f"{a.ref} ({a.digest[:12]})",
                tofile=f"{b.ref} ({b.digest[:12]})",
            )
        )

    def load_prompt(self, ref: str) -> Prompt:
        """A prompt version, typed and ready to `render`."""
        version = self.get(ref)
        if version.kind != "prompt":
            raise KindMismatch(f"{version.ref} is a {version.kind}, not a prompt")
        return Prompt(
            name=version.name,
            version=version.version,
            digest=version.digest,
            spec=PromptSpec.model_validate(version.spec),
        )

    def close(self) -> None:
        self.store.close()

    # -- internals -----------------------------------------------------------------

    def _check_existing(
        self, conn: sa.Connection, item: LoadedArtifact
    ) -> Literal["created", "unchanged"]:
        artifact = conn.execute(
            sa.select(artifacts).where(artifacts.c.name == item.name)
        ).one_or_none()
        if artifact is None:
            return "created"
        if artifact.kind != item.kind.name:
            raise KindMismatch(
                f"{item.lineage.source_path}: '{item.name}' is already a {artifact.kind}, "
                f"so it cannot also be a {item.kind.name}; pick another name"
            )
        existing = conn.execute(
            sa.select(versions.c.digest).where(
                versions.c.artifact_id == artifact.id, versions.c.version == item.version
            )
        ).scalar_one_or_none()
        if existing is None:
            return "created"
        if existing == item.digest:
            return "unchanged"
        raise VersionConflict(
            f"{item.lineage.source_path}: {item.kind.name} {item.ref} already exists with "
            f"different content (stored sha256 {existing}, this file {item.digest}); "
            f"versions are immutable: bump the version (-v{item.version + 1})"
        )

    def _insert(self, conn: sa.Connection, item: LoadedArtifact, now: datetime) -> None:
        artifact_id = conn.execute(
            sa.select(artifacts.c.id).where(artifacts.c.name == item.name)
        ).scalar_one_or_none()
        if artifact_id is None:
            artifact_id = conn.execute(
                sa.insert(artifacts)
                .values(name=item.name, kind=item.kind.name, created_at=now, created_by=self.actor)
                .returning(artifacts.c.id)
            ).scalar_one()
        conn.execute(
            sa.insert(versions).values(
                artifact_id=artifact_id,
                version=item.version,
                digest=item.digest,
                content=json.dumps(item.document, sort_keys=True),
                author=self.actor,
                created_at=now,
                source_path=item.lineage.source_path,
                git_commit=item.lineage.git_commit,
                git_dirty=item.lineage.git_dirty,
            )
        )
        append_event(
            conn,
            actor=self.actor,
            action="push",
            target=item.ref,
            after={
                "kind": item.kind.name,
                "digest": item.digest,
                "source": item.lineage.source_path,
                "git_commit": item.lineage.git_commit,
            },
        )

    def _move(
        self,
        conn: sa.Connection,
        artifact_id: int,
        label: str,
        current: Any,
        version_id: int,
        action: str,
    ) -> None:
        now = _now()
        if current is None:
            conn.execute(
                sa.insert(labels).values(
                    artifact_id=artifact_id,
                    label=label,
                    version_id=version_id,
                    updated_at=now,
                    updated_by=self.actor,
                )
            )
        else:
            conn.execute(
                sa.update(labels)
                .where(labels.c.artifact_id == artifact_id, labels.c.label == label)
                .values(version_id=version_id, updated_at=now, updated_by=self.actor)
            )
        conn.execute(
            sa.insert(label_events).values(
                artifact_id=artifact_id,
                label=label,
                action=action,
                from_version_id=current.version_id if current is not None else None,
                to_version_id=version_id,
                actor=self.actor,
                at=now,
            )
        )

    def _artifact(self, conn: sa.Connection, name: str) -> Any:
        row = conn.execute(sa.select(artifacts).where(artifacts.c.name == name)).one_or_none()
        if row is None:
            raise NotFound(f"no artifact named '{name}'; see: lockgate list")
        return row

    def _label_row(self, conn: sa.Connection, artifact_id: int, label: str) -> Any:
        return conn.execute(
            sa.select(labels).where(labels.c.artifact_id == artifact_id, labels.c.label == label)
        ).one_or_none()

    def _version_number(self, conn: sa.Connection, version_id: int) -> int:
        return int(
            conn.execute(
                sa.select(versions.c.version).where(versions.c.id == version_id)
            ).scalar_one()
        )

    def _resolve(self, conn: sa.Connection, ref: Ref) -> Any:
        artifact = self._artifact(conn, ref.name)
        query = _version_query().where(versions.c.artifact_id == artifact.id)
        if ref.version is not None:
            query = query.where(versions.c.version == ref.version)
        elif ref.label == LATEST:
            query = query.order_by(versions.c.version.desc()).limit(1)
        else:
            query = query.join(labels, labels.c.version_id == versions.c.id).where(
                labels.c.label == ref.label
            )
        row = conn.execute(query).first()
        if row is None:
            what = f"version {ref.version}" if ref.version is not None else f"label '{ref.label}'"
            raise NotFound(
                f"{ref.name} has no {what}; see: lockgate show {ref.name} "
                f"and lockgate label list {ref.name}"
            )
        return row

    def _to_version(self, conn: sa.Connection, row: Any) -> ArtifactVersion:
        doc = json.loads(row.content)
        names = conn.execute(
            sa.select(labels.c.label).where(labels.c.version_id == row.id).order_by(labels.c.label)
        ).scalars()
        return ArtifactVersion(
            kind=doc["kind"],
            name=row.name,
            version=row.version,
            digest=row.digest,
            spec=doc["spec"],
            files={k: BlobRef(v["sha256"], v["size"]) for k, v in doc["files"].items()},
            author=row.author,
            created_at=as_utc(row.created_at),
            source_path=row.source_path,
            git_commit=row.git_commit,
            git_dirty=row.git_dirty,
            labels=tuple(names),
        )


def _version_query() -> sa.Select[Any]:
    return sa.select(versions, artifacts.c.name).join(
        artifacts, artifacts.c.id == versions.c.artifact_id
    )


def _dedupe(loaded: list[LoadedArtifact]) -> list[LoadedArtifact]:
    """Drop repeats of the same version in one batch; refuse the same version twice with
    different content."""
    seen: dict[tuple[str, int], LoadedArtifact] = {}
    kinds: dict[str, LoadedArtifact] = {}
    for item in loaded:
        first = kinds.setdefault(item.name, item)
        if first.kind.name != item.kind.name:
            raise KindMismatch(
                f"'{item.name}' is a {first.kind.name} in {first.lineage.source_path} and a "
                f"{item.kind.name} in {item.lineage.source_path}; a name has one kind"
            )
        key = (item.name, item.version)
        other = seen.get(key)
        if other is None:
            seen[key] = item
        elif other.digest != item.digest:
            raise VersionConflict(
                f"{item.ref} is defined twice with different content: "
                f"{other.lineage.source_path} (sha256 {other.digest}) and "
                f"{item.lineage.source_path} (sha256 {item.digest})"
            )
    return list(seen.values())


def _now() -> datetime:
    return datetime.now(UTC)


def _os_user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


class _BlockDumper(yaml.SafeDumper):
    """Dumps multi-line strings as YAML block scalars so diffs read line by line."""


def _str_representer(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _str_representer)
