"""lockgate: one control plane for classical models and LLM applications.

Example:
    >>> import lockgate
    >>> prompt = lockgate.load_prompt("support-triage@production")
    >>> messages = prompt.render(input="I was charged twice this month")
"""

from __future__ import annotations

from lockgate._version import __version__
from lockgate.config import Settings, load_settings
from lockgate.errors import LockgateError, RuntimeFailure, UserError
from lockgate.governance import AuditLog
from lockgate.registry import ArtifactVersion, Prompt, Registry

__all__ = [
    "ArtifactVersion",
    "AuditLog",
    "LockgateError",
    "Prompt",
    "Registry",
    "RuntimeFailure",
    "Settings",
    "UserError",
    "__version__",
    "load_prompt",
    "load_settings",
]


def load_prompt(ref: str, *, settings: Settings | None = None) -> Prompt:
    """Load a prompt version from the registry: ``load_prompt("support-triage@production")``.

    Raises:
        NotFound: no such prompt, version or label.
        KindMismatch: the reference names something other than a prompt.
    """
    registry = Registry.open(settings)
    try:
        return registry.load_prompt(ref)
    finally:
        registry.close()
