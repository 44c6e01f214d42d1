"""Provider registration: built-ins and third-party plugins register the same way.

A provider *type* (``openai``, ``anthropic``, ``local``, or a plugin's) maps to a factory
``create(name: str, config: ProviderConfig, settings: Settings) -> Provider``. Built-ins are
listed as ``"module:function"`` strings so their modules (and heavy runtimes such as
llama.cpp) are imported only when a provider of that type is first used. Plugins add types
through the ``lockgate.providers`` entry-point group, with the same ``module:function`` form.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import TypeAlias

from lockgate.config import ProviderConfig, Settings
from lockgate.errors import ConfigError
from lockgate.providers._types import Provider

ProviderFactory: TypeAlias = Callable[[str, ProviderConfig, Settings], Provider]

ENTRY_POINT_GROUP = "lockgate.providers"

BUILTIN_PROVIDERS: dict[str, str] = {
    "openai": "lockgate.providers._openai:create",
    "anthropic": "lockgate.providers._anthropic:create",
    "local": "lockgate.providers._local:create",
}

_registered: dict[str, ProviderFactory] = {}


def register(type_name: str, factory: ProviderFactory) -> None:
    """Register (or replace) the factory for a provider type at run time."""
    _registered[type_name] = factory


def provider_types() -> list[str]:
    """Every provider type that can be configured: built-ins, plugins, registered."""
    plugin_names = {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}
    return sorted(set(BUILTIN_PROVIDERS) | plugin_names | set(_registered))


def factory_for(type_name: str) -> ProviderFactory:
    """The factory for `type_name`, importing its module on first use.

    Raises:
        ConfigError: no such provider type is known.
    """
    if type_name in _registered:
        return _registered[type_name]
    target = BUILTIN_PROVIDERS.get(type_name)
    if target is None:
        for ep in entry_points(group=ENTRY_POINT_GROUP, name=type_name):
            target = ep.value
            break
    if target is None:
        raise ConfigError(
            f"unknown provider type '{type_name}'; known types: {', '.join(provider_types())} "
            f"(plugins add more through the '{ENTRY_POINT_GROUP}' entry-point group)"
        )
    module_name, _, attr = target.partition(":")
    factory: ProviderFactory = getattr(importlib.import_module(module_name), attr)
    _registered[type_name] = factory
    return factory
