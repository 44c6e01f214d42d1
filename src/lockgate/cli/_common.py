"""What every command group shares: consoles, lazily opened settings and registry, output."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import typer
from rich.console import Console

from lockgate.config import Settings, load_settings
from lockgate.registry import Registry

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


@dataclass
class CliState:
    """Per-invocation state; nothing is opened until a command needs it."""

    _settings: Settings | None = None
    _registry: Registry | None = field(default=None, repr=False)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings()
        return self._settings

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            self._registry = Registry.open(self.settings)
        return self._registry

    def close(self) -> None:
        if self._registry is not None:
            self._registry.close()


def state(ctx: typer.Context) -> CliState:
    root = ctx.find_root()
    if not isinstance(root.obj, CliState):
        root.obj = CliState()
        root.call_on_close(root.obj.close)
    return root.obj


def print_json(value: Any) -> None:
    """Machine-readable output: plain JSON on stdout, no colour, no wrapping."""
    out.print(json.dumps(value, indent=2, sort_keys=True, default=_default), markup=False)


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def when(value: datetime) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M")


JSON_OPTION = typer.Option(False, "--json", help="Print JSON instead of a table.")
