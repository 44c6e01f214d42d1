"""The one error hierarchy of lockgate.

Two branches, because they call for different reactions. A `UserError` is something the
person at the keyboard must fix (a bad file, a bad reference, a missing key); the CLI
shows it as one clear line per problem and exits 2. A `RuntimeFailure` is something that
went wrong while doing the work (the database is gone, an upstream timed out); the CLI
shows it and exits 3. A failed *check* (a gate, an audit verification) is not an error
at all: it is a result, and the CLI exits 1.

    LockgateError
    ├── UserError                      exit 2
    │   ├── ConfigError                lockgate.yaml / environment is wrong
    │   ├── InvalidArtifact            a file fails validation (file, field, line)
    │   ├── BadReference               "name@what" cannot be parsed
    │   ├── NotFound                   artifact, version or label does not exist
    │   ├── VersionConflict            same version, different content
    │   ├── KindMismatch               a name already belongs to another kind
    │   ├── TemplateError              a prompt cannot be rendered with these variables
    │   ├── MissingExtra               an optional dependency is not installed
    │   ├── LimitExceeded              a tenant/key rate limit or budget refuses a request
    │   └── ContextTooLarge            even the minimal conversation does not fit the window
    └── RuntimeFailure                 exit 3
        ├── StoreError                 the database failed
        ├── BlobCorrupted              a blob no longer matches its sha256
        ├── ReplayMiss                 --replay found no recorded response for a call
        └── ProviderError              a model call failed (see lockgate.providers)
            ├── AuthError
            ├── RateLimited            carries retry_after (seconds) when known
            ├── Timeout
            ├── ContextWindowExceeded
            └── UpstreamError          any other upstream failure (5xx, dropped stream)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "AuthError",
    "BadReference",
    "BlobCorrupted",
    "ConfigError",
    "ContextTooLarge",
    "ContextWindowExceeded",
    "InvalidArtifact",
    "KindMismatch",
    "LimitExceeded",
    "LockgateError",
    "MissingExtra",
    "NotFound",
    "Problem",
    "ProviderError",
    "RateLimited",
    "ReplayMiss",
    "RuntimeFailure",
    "StoreError",
    "TemplateError",
    "Timeout",
    "UpstreamError",
    "UserError",
    "VersionConflict",
]


class LockgateError(Exception):
    """Base class of every error lockgate raises on purpose."""

    exit_code = 3


class UserError(LockgateError):
    """The user must change something (a file, a flag, a reference) to proceed."""

    exit_code = 2


class RuntimeFailure(LockgateError):
    """Something failed while doing the work; retrying or fixing infrastructure helps."""

    exit_code = 3


@dataclass(frozen=True)
class Problem:
    """One located problem in a user file: `path:line: field: message`."""

    message: str
    path: Path | None = None
    line: int | None = None
    field: str | None = None

    def __str__(self) -> str:
        where = ""
        if self.path is not None:
            where = str(self.path)
            if self.line is not None:
                where += f":{self.line}"
            where += ": "
        field = f"field '{self.field}': " if self.field else ""
        return f"{where}{field}{self.message}"


class ConfigError(UserError):
    """Settings (lockgate.yaml or LOCKGATE_* variables) are invalid."""

    def __init__(self, problems: Sequence[Problem] | str) -> None:
        self.problems = [Problem(problems)] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class InvalidArtifact(UserError):
    """A file does not describe a valid artifact; `problems` says where and why."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class BadReference(UserError):
    """A reference such as ``support-triage@production`` cannot be parsed."""


class NotFound(UserError):
    """An artifact, version or label does not exist."""


class VersionConflict(UserError):
    """A version already exists with different content; versions are immutable."""


class KindMismatch(UserError):
    """A name is already used by an artifact of another kind."""


class TemplateError(UserError):
    """A prompt template cannot be rendered (undefined variable, bad syntax)."""


class MissingExtra(UserError):
    """An optional dependency is needed; the message names the pip extra to install."""

    def __init__(self, feature: str, extra: str, module: str) -> None:
        super().__init__(
            f"{feature} needs the optional dependency '{module}', which is not installed; "
            f'install it with: pip install "lockgate[{extra}]"'
        )
        self.extra = extra


class LimitExceeded(UserError):
    """A rate limit or budget refused a request; the gateway answers 429.

    Attributes:
        limit: which limit, e.g. ``tenant:acme usd_per_day``.
        retry_after: seconds until the limit may admit the request again (None: not soon).
    """

    def __init__(self, message: str, *, limit: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.limit = limit
        self.retry_after = retry_after


class ContextTooLarge(UserError):
    """The system message plus the latest user turn alone exceed the model's window."""


class StoreError(RuntimeFailure):
    """The database could not be reached or a migration failed."""


class BlobCorrupted(RuntimeFailure):
    """A stored blob no longer hashes to the digest it is filed under."""


class ReplayMiss(RuntimeFailure):
    """Replay mode found no recorded response for a call, so the run cannot be reproduced."""


class ProviderError(RuntimeFailure):
    """A model provider call failed."""

    def __init__(self, message: str, *, provider: str | None = None, status: int | None = None):
        super().__init__(message)
        self.provider = provider
        self.status = status


class AuthError(ProviderError):
    """The provider refused our credentials (401/403)."""


class RateLimited(ProviderError):
    """The provider asked us to slow down (429); `retry_after` is in seconds when known."""

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        status: int | None = 429,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, provider=provider, status=status)
        self.retry_after = retry_after


class Timeout(ProviderError):
    """The provider did not answer in time (connect, read or total timeout)."""


class ContextWindowExceeded(ProviderError):
    """The request does not fit the model's context window."""


class UpstreamError(ProviderError):
    """Any other provider failure: 5xx, malformed answer, stream dropped midway."""
