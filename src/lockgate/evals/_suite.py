"""Finding what to run: a suite version, its cases, and the target version.

`lockgate eval` accepts a suite reference (``support-triage-eval@4``), a suite id as
written in files (``support-triage-eval-v4``), or a prompt/model reference whose
``eval_suite`` names the suite (``support-triage@5`` runs support-triage-eval-v4 against
prompt version 5).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lockgate.errors import KindMismatch, NotFound, UserError
from lockgate.evals._dataset import cases_from_rows, load_cases
from lockgate.evals._types import Case
from lockgate.registry import ArtifactVersion, Registry
from lockgate.registry._kinds import SuiteSpec

_ID = re.compile(r"^(?P<name>.+)-v(?P<version>\d+)$")


@dataclass(frozen=True)
class ResolvedSuite:
    """A suite version ready to run: its spec, cases and target."""

    suite: ArtifactVersion
    spec: SuiteSpec
    cases: list[Case]
    target: ArtifactVersion
    dataset_digest: str | None

    @property
    def ref(self) -> str:
        return self.suite.ref


def as_reference(text: str) -> str:
    """``support-triage-eval-v4`` → ``support-triage-eval@4``; references pass through."""
    if "@" in text:
        return text
    match = _ID.match(text)
    return f"{match['name']}@{match['version']}" if match else text


def resolve(registry: Registry, ref: str, *, target: str | None = None) -> ResolvedSuite:
    """Resolve what `ref` names into a runnable suite.

    Raises:
        NotFound: the suite, its dataset blob, or the target does not exist.
        KindMismatch: `ref` names something that is neither a suite nor has a suite.
    """
    version = registry.get(as_reference(ref))
    target_version: ArtifactVersion | None = None
    if version.kind in ("prompt", "model"):
        suite_id = version.spec.get("eval_suite")
        if not suite_id:
            raise KindMismatch(
                f"{version.ref} is a {version.kind} without an eval_suite field; "
                "name a suite instead, or add eval_suite to the file"
            )
        target_version = version
        version = registry.get(as_reference(str(suite_id)))
    if version.kind != "suite":
        raise KindMismatch(f"{version.ref} is a {version.kind}, not a suite")
    spec = SuiteSpec.model_validate(version.spec)
    if target is not None:
        target_version = registry.get(as_reference(target))
    if target_version is None:
        target_version = registry.get(as_reference(spec.target))
    if target_version.kind not in ("prompt", "model"):
        raise KindMismatch(
            f"suite {version.ref} targets {target_version.ref}, a {target_version.kind}; "
            "a target must be a prompt or a model"
        )
    cases, digest = _cases(registry, version, spec)
    return ResolvedSuite(version, spec, cases, target_version, digest)


def _cases(
    registry: Registry, version: ArtifactVersion, spec: SuiteSpec
) -> tuple[list[Case], str | None]:
    if spec.cases is not None:
        rows = ((f"{version.ref} cases[{i}]", row) for i, row in enumerate(spec.cases))
        return cases_from_rows(rows), None
    blob = version.files.get("dataset")
    if blob is None or spec.dataset is None:
        raise NotFound(f"suite {version.ref} has no dataset file recorded; push it again")
    data = registry.store.blobs.read_bytes(blob.sha256)
    try:
        return load_cases(data, name=spec.dataset), blob.sha256
    except UserError as exc:
        raise UserError(f"suite {version.ref}: {exc}") from None
