"""lockgate: one control plane for classical models and LLM applications.

Example:
    >>> import lockgate
    >>> prompt = lockgate.load_prompt("support-triage@production")
    >>> messages = prompt.render(input="I was charged twice this month")
"""

from __future__ import annotations

from typing import Any

from lockgate._version import __version__
from lockgate.config import Settings, load_settings
from lockgate.errors import LockgateError, RuntimeFailure, UserError
from lockgate.governance import AuditLog
from lockgate.registry import ArtifactVersion, Prompt, Registry

__all__ = [
    "ArtifactVersion",
    "AuditLog",
    "Client",
    "LockgateError",
    "Prompt",
    "Registry",
    "RuntimeFailure",
    "Settings",
    "UserError",
    "__version__",
    "load_prompt",
    "load_settings",
    "run_suite",
    "scorer",
]

# Imported on first use (PEP 562) so `import lockgate` stays light: the engine pulls in
# numpy, the client the provider stack.
_LAZY = {
    "Client": ("lockgate.providers", "Client"),
    "run_suite": ("lockgate.evals", "run_suite"),
    "scorer": ("lockgate.scorers", "scorer"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'lockgate' has no attribute {name!r}")


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
