"""Reading artifact files from disk into validated, hashable documents."""

from __future__ import annotations

import inspect
import math
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydantic

from lockgate._canonical import canonical_hash
from lockgate._yaml import Located, YamlProblems, dotted, load_yaml_file, pydantic_problems
from lockgate.config import CONFIG_FILENAME
from lockgate.errors import InvalidArtifact, Problem
from lockgate.registry._kinds import ID_FIELDS, KINDS, Kind, kind_of
from lockgate.registry._refs import split_id
from lockgate.store import BlobRef, sha256_file

YAML_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class Lineage:
    """Where a version came from."""

    source_path: str | None = None
    git_commit: str | None = None
    git_dirty: bool | None = None


@dataclass
class LoadedArtifact:
    """A validated artifact file, with its blobs hashed but not yet stored."""

    kind: Kind
    name: str
    version: int
    spec: dict[str, Any]
    files: dict[str, tuple[Path, BlobRef]] = field(default_factory=dict)
    lineage: Lineage = field(default_factory=Lineage)
    source: Path = Path()

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def document(self) -> dict[str, Any]:
        """What the version's digest covers: kind, spec as written, file hashes."""
        return document(self.kind.name, self.spec, {k: ref for k, (_, ref) in self.files.items()})

    @property
    def digest(self) -> str:
        return canonical_hash(self.document)


def document(kind: str, spec: dict[str, Any], files: dict[str, BlobRef]) -> dict[str, Any]:
    return {
        "kind": kind,
        "spec": spec,
        "files": {k: {"sha256": ref.sha256, "size": ref.size} for k, ref in sorted(files.items())},
    }


@dataclass
class Collected:
    """Files found under the paths given to push."""

    files: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)


def collect(paths: Sequence[Path]) -> tuple[Collected, list[Problem]]:
    """Expand files and directories (recursively) into artifact files.

    Inside a directory, YAML files without a ``*_id`` field and lockgate.yaml are skipped;
    a file named explicitly must be an artifact.
    """
    found = Collected()
    problems: list[Problem] = []
    for path in paths:
        if path.is_dir():
            for candidate in sorted(_yaml_files(path)):
                if candidate.name == CONFIG_FILENAME or not _looks_like_artifact(candidate):
                    found.skipped.append(candidate)
                else:
                    found.files.append(candidate)
        elif path.is_file():
            found.files.append(path)
        else:
            problems.append(Problem("no such file or directory", path=path))
    return found, problems


def load_artifact(path: Path) -> LoadedArtifact:
    """Validate one artifact file and hash the blobs it points at.

    Raises:
        InvalidArtifact: with every problem found, each naming file, field and line.
    """
    try:
        located = load_yaml_file(path)
    except YamlProblems as exc:
        raise InvalidArtifact(exc.problems) from None
    data = located.data
    if not isinstance(data, dict):
        raise InvalidArtifact(
            [Problem("expected a mapping with a *_id field (for example prompt_id)", path, 1)]
        )
    kinds = kind_of(data)
    if len(kinds) != 1:
        fields = ", ".join(sorted(ID_FIELDS))
        message = (
            f"not an artifact: add exactly one of {fields}"
            if not kinds
            else f"more than one id field ({', '.join(k.id_field for k in kinds)}); keep one"
        )
        raise InvalidArtifact([Problem(message, path=path, line=1)])
    kind = kinds[0]
    problems: list[Problem] = []
    name, version = "", 0
    raw_id = data[kind.id_field]
    try:
        name, version = split_id(str(raw_id))
    except ValueError as exc:
        problems.append(Problem(str(exc), path, located.line_of((kind.id_field,)), kind.id_field))
    for loc in _non_finite(data, ()):
        problems.append(
            Problem(
                "NaN or infinity has no canonical form; use a finite number",
                path,
                located.line_of(loc),
                dotted(loc),
            )
        )
    try:
        model = kind.schema.model_validate(data)
    except pydantic.ValidationError as exc:
        problems.extend(pydantic_problems(exc, located))
        raise InvalidArtifact(problems) from None

    files: dict[str, tuple[Path, BlobRef]] = {}
    for field_name in kind.file_fields:
        value = getattr(model, field_name)
        if value is None:
            continue
        target = path.parent / value
        line = located.line_of((field_name,))
        if not target.is_file():
            problems.append(
                Problem(
                    f"file '{value}' not found (looked for {target}); paths are relative to "
                    "this YAML file",
                    path,
                    line,
                    field_name,
                )
            )
            continue
        files[field_name] = (target, sha256_file(target))
    spec = model.model_dump(mode="json", exclude_unset=True)
    loaded = LoadedArtifact(kind, name, version, spec, files, lineage_of(path), path)
    try:
        loaded.digest  # noqa: B018 - fail now, with a located message, not at push time
    except UnicodeEncodeError:
        problems.append(
            Problem("contains text that is not valid Unicode (a lone surrogate escape)", path, 1)
        )
    if kind.name == "suite" and not problems:
        problems.extend(_suite_problems(model, files, path, located))
    if problems:
        raise InvalidArtifact(problems)
    return loaded


def _suite_problems(
    suite: Any, files: dict[str, tuple[Path, BlobRef]], path: Path, located: Located
) -> list[Problem]:
    """What would only fail at eval time otherwise: unknown scorers, arguments a scorer
    does not take, and dataset rows that are not cases. Versions are immutable, so a suite
    that cannot run must not get one."""
    # Imported here: the engine sits above the registry and imports it.
    from lockgate.errors import UserError
    from lockgate.evals._dataset import cases_from_rows, load_cases
    from lockgate.scorers._registry import get_scorer

    problems = []
    for index, spec in enumerate(suite.scorers):
        where = ("scorers", index)
        try:
            info = get_scorer(spec.name)
            inspect.signature(info.factory).bind(**spec.args)
        except UserError as exc:
            problems.append(
                Problem(str(exc), path, located.line_of((*where, "name")), dotted(where))
            )
        except TypeError as exc:
            accepted = ", ".join(inspect.signature(info.factory).parameters) or "no arguments"
            problems.append(
                Problem(
                    f"scorer '{spec.name}': {exc} (it accepts: {accepted})",
                    path,
                    located.line_of((*where, "args")),
                    f"{dotted(where)}.args",
                )
            )
    try:
        if suite.cases is not None:
            cases_from_rows((f"cases[{i}]", row) for i, row in enumerate(suite.cases))
        elif "dataset" in files:
            source, _ = files["dataset"]
            load_cases(source.read_bytes(), name=str(source))
    except UserError as exc:
        field = "cases" if suite.cases is not None else "dataset"
        problems.append(Problem(str(exc), path, located.line_of((field,)), field))
    return problems


def load_all(paths: Iterable[Path]) -> list[LoadedArtifact]:
    """Load every file; raise one `InvalidArtifact` listing the problems of all of them."""
    loaded, problems = [], []
    for path in paths:
        try:
            loaded.append(load_artifact(path))
        except InvalidArtifact as exc:
            problems.extend(exc.problems)
    if problems:
        raise InvalidArtifact(problems)
    return loaded


def lineage_of(path: Path) -> Lineage:
    """Source path, and the git commit that last touched it (None outside a git repo)."""
    resolved = path.resolve()
    commit = _git(resolved.parent, "log", "-1", "--format=%H", "--", resolved.name)
    dirty = None
    if commit is not None:
        status = _git(resolved.parent, "status", "--porcelain", "--", resolved.name)
        dirty = bool(status)
    return Lineage(str(resolved), commit or None, dirty)


def _git(cwd: Path, *args: str) -> str | None:
    try:
        result = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def _non_finite(value: Any, loc: tuple[str | int, ...]) -> Iterable[tuple[str | int, ...]]:
    if isinstance(value, float) and not math.isfinite(value):
        yield loc
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _non_finite(item, (*loc, str(key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _non_finite(item, (*loc, index))


def _yaml_files(directory: Path) -> Iterable[Path]:
    for suffix in YAML_SUFFIXES:
        yield from (p for p in directory.rglob(f"*{suffix}") if p.is_file())


def _looks_like_artifact(path: Path) -> bool:
    """Cheap check before full parsing: does a top-level ``*_id:`` key appear?"""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return True  # let load_artifact report the problem properly
    return any(line.startswith(f"{field}:") for line in text.splitlines() for field in ID_FIELDS)


__all__ = ["KINDS", "Collected", "LoadedArtifact", "collect", "load_all", "load_artifact"]
