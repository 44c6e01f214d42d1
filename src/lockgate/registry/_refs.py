"""Artifact identifiers (``support-triage-v4``) and references (``support-triage@production``)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from lockgate.errors import BadReference

NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}"
_ID = re.compile(rf"^(?P<name>{NAME_PATTERN}?)-v(?P<version>[0-9]+)$")
_NAME = re.compile(rf"^{NAME_PATTERN}$")
_LABEL = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,99}$")

LATEST = "latest"


def split_id(artifact_id: str) -> tuple[str, int]:
    """``support-triage-v4`` → (``support-triage``, 4).

    Raises:
        ValueError: the id does not end in ``-vN`` with N ≥ 1.
    """
    match = _ID.match(artifact_id)
    if not match or int(match["version"]) < 1:
        raise ValueError(
            f"'{artifact_id}' must be a name followed by -vN with N >= 1, "
            "for example support-triage-v4"
        )
    return match["name"], int(match["version"])


def check_label(label: str) -> str:
    """Return `label` if it is a valid label name, else raise `BadReference`."""
    if not _LABEL.match(label) or label == LATEST or re.fullmatch(r"[vV][0-9]+", label):
        raise BadReference(
            f"'{label}' is not a valid label: use a letter followed by letters, digits, "
            "'.', '_' or '-' (not 'latest', which means the newest version, nor vN, which means "
            "version N)"
        )
    return label


@dataclass(frozen=True)
class Ref:
    """A parsed reference: exactly one of `version` or `label` is set."""

    name: str
    version: int | None = None
    label: str | None = None

    @classmethod
    def parse(cls, text: str) -> Ref:
        """Parse ``name``, ``name@4``, ``name@v4``, ``name@production`` or ``name@latest``.

        A bare name means ``name@latest``.
        """
        name, sep, selector = text.strip().partition("@")
        if not _NAME.match(name):
            raise BadReference(
                f"'{text}' is not a valid reference: expected NAME@VERSION, NAME@LABEL or "
                "NAME@latest, for example support-triage@4 or support-triage@production"
            )
        if not sep:
            return cls(name, label=LATEST)
        if not selector:
            raise BadReference(f"'{text}' has nothing after '@': add a version or a label")
        digits = selector[1:] if selector[:1] in "vV" else selector
        if digits.isdigit():
            if int(digits) < 1:
                raise BadReference(f"'{text}': versions start at 1")
            return cls(name, version=int(digits))
        if selector == LATEST:
            return cls(name, label=LATEST)
        try:
            return cls(name, label=check_label(selector))
        except BadReference as exc:
            raise BadReference(f"'{text}' is not a valid reference: {exc}") from None

    def __str__(self) -> str:
        return f"{self.name}@{self.version if self.version is not None else self.label}"
