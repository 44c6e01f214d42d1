"""Settings: where lockgate keeps its data and how it reaches its services.

Sources, highest priority first: keyword arguments, ``LOCKGATE_*`` environment variables,
the project's ``lockgate.yaml``, defaults. The YAML file is the one in the current
directory, or the one ``LOCKGATE_CONFIG`` names. Relative paths in the file are relative
to the file; relative paths elsewhere are relative to the current directory.

Example ``lockgate.yaml``::

    home: .lockgate
    database_url: postgresql+psycopg://lockgate@db.internal/lockgate
"""

from __future__ import annotations

import os
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import pydantic
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from lockgate._yaml import Located, YamlProblems, dotted, load_yaml_file
from lockgate.errors import ConfigError, Problem

__all__ = [
    "CONFIG_FILENAME",
    "AutoRule",
    "CacheConfig",
    "CircuitBreakerConfig",
    "GatewayConfig",
    "PriceOverride",
    "ProviderConfig",
    "RouteConfig",
    "Settings",
    "Timeouts",
    "load_settings",
]

CONFIG_FILENAME = "lockgate.yaml"
_ENV_PREFIX = "LOCKGATE_"

_file_data: ContextVar[Located | None] = ContextVar("lockgate_config_file", default=None)


class Timeouts(BaseModel):
    """Seconds allowed to connect, to wait for each read, and for the whole call."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    connect: float = Field(default=10.0, gt=0)
    read: float = Field(default=120.0, gt=0)
    total: float = Field(default=600.0, gt=0)


class ProviderConfig(BaseModel):
    """One provider instance in ``lockgate.yaml`` under ``providers:``.

    Example::

        providers:
          openai: {base_url: https://api.openai.com/v1, api_key_env: OPENAI_API_KEY}
          vllm: {type: openai, base_url: http://gpu-box:8000/v1}
          claude: {type: anthropic}
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str | None = Field(
        default=None,
        description="Provider implementation (openai, anthropic, local); defaults to the "
        "instance name.",
    )
    base_url: str | None = None
    api_key_env: str | None = Field(
        default=None, description="Environment variable holding the API key."
    )
    timeouts: Timeouts = Field(default_factory=Timeouts)
    max_retries: int = Field(default=3, ge=0, le=20)
    retry_base_delay: float = Field(
        default=0.5, ge=0, description="Seconds before the first retry; doubles each time."
    )
    retry_max_delay: float = Field(
        default=30.0,
        ge=0,
        description="Cap on one wait; a Retry-After longer than this fails the call at once.",
    )
    options: dict[str, Any] = Field(
        default_factory=dict, description="Provider-specific options (e.g. n_threads for local)."
    )


class PriceOverride(BaseModel):
    """USD per million tokens, and the context window, for one ``PROVIDER/MODEL``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_per_mtok: float | None = Field(default=None, ge=0)
    output_per_mtok: float | None = Field(default=None, ge=0)
    cached_input_per_mtok: float | None = Field(default=None, ge=0)
    context_window: int | None = Field(default=None, ge=1)


class CacheConfig(BaseModel):
    """The model-response cache."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    ttl_seconds: float | None = Field(
        default=7 * 24 * 3600, gt=0, description="Entry lifetime; null keeps entries forever."
    )


class CircuitBreakerConfig(BaseModel):
    """When a deployment is taken out of rotation, and for how long."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    failures: int = Field(default=5, ge=1, description="Consecutive failures that open it.")
    failure_ratio: float = Field(
        default=0.5, gt=0, le=1, description="Or this share of failures within the window…"
    )
    window_s: float = Field(default=30.0, gt=0, description="…over this many seconds.")
    min_requests: int = Field(default=10, ge=1, description="Calls needed before the ratio counts.")
    cooldown_s: float = Field(default=30.0, gt=0, description="Open for this long, then probe.")


class AutoRule(BaseModel):
    """The `auto` route's rule: easy requests go to the cheap route, hard ones to the
    capable one. A request is hard when its input exceeds `max_easy_tokens`, when it
    contains one of `hard_keywords`, or when it asks for tools or a JSON schema."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    easy: str = Field(description="Route (or PROVIDER/MODEL) for easy requests.")
    hard: str = Field(description="Route (or PROVIDER/MODEL) for hard requests.")
    max_easy_tokens: int = Field(default=500, ge=1)
    hard_keywords: list[str] = Field(
        default_factory=lambda: [
            "step by step",
            "prove",
            "analyze",
            "analyse",
            "refactor",
            "debug",
            "architecture",
            "legal",
            "contract",
        ]
    )
    tools_are_hard: bool = True


class RouteConfig(BaseModel):
    """A named route in ``lockgate.yaml`` under ``routes:``.

    Example::

        routes:
          fast: {deployments: [openai/gpt-4o-mini-2024-07-18, local/qwen2.5-coder-1.5b-instruct]}
          smart: {deployments: [anthropic/claude-sonnet-4-5-20250929]}
          auto: {auto: {easy: fast, hard: smart}}
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    deployments: list[str] = Field(
        default_factory=list, description="PROVIDER/MODEL in fallback order."
    )
    auto: AutoRule | None = None
    retries: int = Field(default=1, ge=0, le=10, description="Retries per deployment.")
    timeout_s: float = Field(default=60.0, gt=0)
    input_token_budget: int | None = Field(
        default=None, ge=1, description="Trim history beyond this many input tokens."
    )
    semantic_cache: bool = False
    semantic_threshold: float = Field(default=0.95, gt=0, le=1)
    circuit_breaker: CircuitBreakerConfig = Field(default_factory=CircuitBreakerConfig)

    @model_validator(mode="after")
    def _one_kind(self) -> RouteConfig:
        if bool(self.deployments) == (self.auto is not None):
            raise ValueError("a route has either 'deployments' or an 'auto' rule")
        return self


class GatewayConfig(BaseModel):
    """`lockgate serve`: the OpenAI-compatible gateway."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    max_body_bytes: int = Field(default=2_000_000, ge=1024)
    cache_ttl_s: float = Field(default=3600.0, gt=0, description="Exact/semantic cache entries.")
    trace_queue_size: int = Field(default=10_000, ge=1)
    trace_batch_size: int = Field(default=500, ge=1)
    trace_flush_interval_s: float = Field(default=0.2, gt=0)
    capture_content: bool = Field(
        default=False, description="Store prompts and answers in traces and spans."
    )
    config_poll_s: float = Field(
        default=1.0, gt=0, description="How often replicas check for key/tenant changes."
    )


class Settings(BaseSettings):
    """Resolved lockgate settings. Build them with `load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix=_ENV_PREFIX, extra="forbid", frozen=True, env_nested_delimiter="__"
    )

    home: Path = Field(
        default=Path(".lockgate"),
        description="Directory for the embedded database, blobs and local models.",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; defaults to SQLite at HOME/lockgate.db. "
        "For PostgreSQL: postgresql+psycopg://user@host/db.",
    )
    redis_url: str | None = Field(
        default=None, description="Redis URL for counters shared by gateway replicas."
    )
    user: str | None = Field(
        default=None,
        description="Actor recorded in lineage and the audit log; defaults to the OS user.",
    )
    config_file: Path | None = Field(
        default=None, description="The lockgate.yaml these settings were read from, if any."
    )
    providers: dict[str, ProviderConfig] = Field(
        default_factory=dict,
        description="Provider instances by name; openai, anthropic and local exist by default.",
    )
    aliases: dict[str, str] = Field(
        default_factory=dict,
        description="Model names used in prompts mapped to PROVIDER/MODEL "
        "(e.g. gpt-class-foundation-model: local/qwen2.5-coder-1.5b-instruct).",
    )
    prices: dict[str, PriceOverride] = Field(
        default_factory=dict, description="Price and context-window overrides by PROVIDER/MODEL."
    )
    cache: CacheConfig = Field(default_factory=CacheConfig)
    routes: dict[str, RouteConfig] = Field(default_factory=dict)
    gateway: GatewayConfig = Field(default_factory=GatewayConfig)

    @property
    def db_url(self) -> str:
        """The database URL in force (the SQLite default when none is set)."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.home / 'lockgate.db'}"

    @property
    def blob_dir(self) -> Path:
        return self.home / "blobs"

    def environment(self, name: str) -> str | None:
        """An environment variable named by configuration (``api_key_env``,
        ``OPENAI_BASE_URL``). Settings are the one layer that reads the environment;
        everything below asks here."""
        return os.environ.get(name) or None

    @property
    def model_dir(self) -> Path:
        """Where local model files are assembled (HOME/models)."""
        return self.home / "models"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _YamlSource(settings_cls))


class _YamlSource(PydanticBaseSettingsSource):
    """Feeds the already-parsed lockgate.yaml (set by `load_settings`) into the settings."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self().get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        located = _file_data.get()
        if located is None or located.data is None:
            return {}
        return dict(located.data)


def load_settings(
    config_file: Path | None = None,
    *,
    cwd: Path | None = None,
    **overrides: Any,
) -> Settings:
    """Resolve settings from arguments, the environment and lockgate.yaml.

    Args:
        config_file: an explicit lockgate.yaml; otherwise ``LOCKGATE_CONFIG`` or
            ``./lockgate.yaml`` when present.
        cwd: directory that relative defaults resolve against (the process's by default).
        **overrides: field values that win over every other source.

    Raises:
        ConfigError: the file is malformed or a value is invalid; the message names
            the file and line, or the environment variable.
    """
    env = os.environ
    base = Path.cwd() if cwd is None else cwd
    path = config_file or (Path(env["LOCKGATE_CONFIG"]) if env.get("LOCKGATE_CONFIG") else None)
    if path is None and (base / CONFIG_FILENAME).is_file():
        path = base / CONFIG_FILENAME
    if path is not None and not path.is_absolute():
        path = base / path

    located: Located | None = None
    if path is not None:
        try:
            located = load_yaml_file(path)
        except YamlProblems as exc:
            raise ConfigError(exc.problems) from None
        if located.data is not None and not isinstance(located.data, dict):
            raise ConfigError([Problem("expected a mapping of settings", path=path, line=1)])

    token = _file_data.set(located)
    try:
        settings = _build(overrides, located, env)
    finally:
        _file_data.reset(token)

    home = settings.home.expanduser()
    if not home.is_absolute():
        from_file = (
            located is not None
            and isinstance(located.data, dict)
            and "home" in located.data
            and "home" not in overrides
            and f"{_ENV_PREFIX}HOME" not in env
        )
        home = (path.parent if from_file and path else base) / home
    return settings.model_copy(update={"home": home, "config_file": path})


def _build(overrides: dict[str, Any], located: Located | None, env: Any) -> Settings:
    try:
        return Settings(**overrides)
    except SettingsError as exc:
        # Raised for a LOCKGATE_* variable holding a structured value that is not JSON.
        field = str(exc).split('"')[1] if '"' in str(exc) else "?"
        raise ConfigError(
            f"environment variable {_ENV_PREFIX}{field.upper()}: not valid JSON "
            f"(structured settings such as {field} take a JSON object)"
        ) from None
    except pydantic.ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            loc = tuple(p for p in err["loc"] if isinstance(p, str | int))
            top = str(loc[0]) if loc else ""
            message = "unknown setting" if err["type"] == "extra_forbidden" else err["msg"]
            variable = f"{_ENV_PREFIX}{top.upper()}"
            if top in overrides:
                problems.append(Problem(message, field=dotted(loc)))
            elif variable in env:
                problems.append(Problem(f"environment variable {variable}: {message}"))
            elif located is not None:
                problems.append(
                    Problem(
                        message, path=located.path, line=located.line_of(loc), field=dotted(loc)
                    )
                )
            else:
                problems.append(Problem(message, field=dotted(loc)))
        raise ConfigError(problems) from None
