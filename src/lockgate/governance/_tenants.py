"""Gateway tenants, their API keys, and the in-memory key cache the gateway reads.

A key's secret (``lg-<key id>-<random>``) is shown once, when the key is created; the
database keeps only its sha256. Every mutation runs in one write transaction that also
appends an audit event (never containing the secret) and bumps the ``config_version``
row. Gateway replicas poll that one row and reload their `KeyCache` when it changes, so
serving a request never reads the database.

Example:
    >>> tenants = TenantStore(store, actor="alice")
    >>> tenants.create_tenant("acme", Limits(usd_per_day=Decimal("5")))
    >>> key, secret = tenants.create_key("acme", label="backend")
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import sqlalchemy as sa

from lockgate.errors import LockgateError, NotFound, UserError
from lockgate.governance._audit import append_event
from lockgate.store import Store
from lockgate.store._tables import api_keys, as_utc, config_version, tenants

__all__ = [
    "ApiKey",
    "KeyCache",
    "Limits",
    "Tenant",
    "TenantStore",
    "hash_secret",
    "parse_usd",
]

logger = logging.getLogger("lockgate.gateway")

_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,99}")
_USD_PLACES = Decimal("0.000001")  # the columns are Numeric(18, 6)
_USD_MAX = Decimal("999999999999.999999")
_LIMIT_FIELDS = ("requests_per_minute", "tokens_per_minute", "usd_per_day", "usd_per_month")


@dataclass(frozen=True)
class Limits:
    """Rate limits and budgets of a tenant or key; None means unlimited.

    USD amounts are exact decimals with at most six places (micro-dollars).
    """

    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    usd_per_day: Decimal | None = None
    usd_per_month: Decimal | None = None

    def __post_init__(self) -> None:
        for name in ("requests_per_minute", "tokens_per_minute"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise UserError(f"{name} must be a whole number, not {value!r}")
            if value is not None and value < 0:
                raise UserError(f"{name} must be 0 or more (got {value}); omit it for no limit")
        for name in ("usd_per_day", "usd_per_month"):
            value = getattr(self, name)
            if value is None:
                continue
            if not isinstance(value, Decimal) or not value.is_finite():
                raise UserError(f"{name} must be a finite decimal amount of USD, not {value!r}")
            if value < 0 or value > _USD_MAX:
                raise UserError(f"{name} must be between 0 and {_USD_MAX} USD (got {value})")
            if value != value.quantize(_USD_PLACES):
                raise UserError(f"{name} has more than 6 decimal places: {value}")

    def as_dict(self) -> dict[str, int | str | None]:
        """JSON-ready form (USD amounts as strings, to stay exact)."""
        return {
            "requests_per_minute": self.requests_per_minute,
            "tokens_per_minute": self.tokens_per_minute,
            "usd_per_day": _usd_text(self.usd_per_day),
            "usd_per_month": _usd_text(self.usd_per_month),
        }


@dataclass(frozen=True)
class Tenant:
    """A customer or team of the gateway."""

    name: str
    limits: Limits
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class ApiKey:
    """An API key (never its secret). Its limits narrow its tenant's."""

    id: str
    tenant: str
    label: str | None
    limits: Limits
    created_at: datetime
    created_by: str
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def hash_secret(secret: str) -> str:
    """The sha256 (hex) under which a key's secret is stored and looked up."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def parse_usd(text: str, *, field: str) -> Decimal:
    """A USD amount typed by a user (``5``, ``0.50``, ``$2``) as an exact Decimal."""
    try:
        return Decimal(text.strip().removeprefix("$"))
    except InvalidOperation:
        raise UserError(f"{field}: {text!r} is not an amount of USD (write e.g. 0.50)") from None


class TenantStore:
    """Create, change and list tenants and their API keys; every change is audited."""

    def __init__(self, store: Store, actor: str) -> None:
        self.store = store
        self.actor = actor

    # -- tenants -------------------------------------------------------------------

    def create_tenant(self, name: str, limits: Limits | None = None) -> Tenant:
        """Add a tenant; its name is lowercase letters, digits, ``-`` and ``_``."""
        if not _NAME.fullmatch(name):
            raise UserError(
                f"tenant name {name!r} is not valid: use 1-100 lowercase letters, digits, "
                "'-' or '_', starting with a letter or digit"
            )
        limits = limits or Limits()
        now = datetime.now(UTC)
        with self.store.write() as conn:
            if conn.execute(sa.select(tenants.c.name).where(tenants.c.name == name)).first():
                raise UserError(
                    f"tenant '{name}' already exists; change its limits with: "
                    f"lockgate tenants update {name} …"
                )
            conn.execute(
                sa.insert(tenants).values(
                    name=name, created_at=now, updated_at=now, **_limit_columns(limits)
                )
            )
            append_event(
                conn,
                actor=self.actor,
                action="tenant.create",
                target=f"tenant:{name}",
                after=limits.as_dict(),
            )
            _bump_version(conn)
        return Tenant(name, limits, now, now)

    def update_tenant(self, name: str, **changes: Any) -> Tenant:
        """Change only the given limits; pass ``None`` to make one unlimited.

        Example:
            >>> tenants.update_tenant("acme", usd_per_day=Decimal("10"), tokens_per_minute=None)
        """
        unknown = sorted(set(changes) - set(_LIMIT_FIELDS))
        if unknown:
            raise UserError(
                f"cannot change {', '.join(unknown)} of a tenant; the limits are "
                f"{', '.join(_LIMIT_FIELDS)}"
            )
        with self.store.write() as conn:
            current = _tenant_row(conn, name, for_update=True)
            limits = dataclasses.replace(current.limits, **changes)
            if limits == current.limits:
                return current
            now = datetime.now(UTC)
            conn.execute(
                sa.update(tenants)
                .where(tenants.c.name == name)
                .values(updated_at=now, **_limit_columns(limits))
            )
            append_event(
                conn,
                actor=self.actor,
                action="tenant.update",
                target=f"tenant:{name}",
                before=current.limits.as_dict(),
                after=limits.as_dict(),
            )
            _bump_version(conn)
        return dataclasses.replace(current, limits=limits, updated_at=now)

    def get_tenant(self, name: str) -> Tenant:
        with self.store.read() as conn:
            return _tenant_row(conn, name)

    def list_tenants(self) -> list[Tenant]:
        with self.store.read() as conn:
            rows = conn.execute(sa.select(tenants).order_by(tenants.c.name))
            return [_tenant(row._mapping) for row in rows]

    # -- keys ------------------------------------------------------------------------

    def create_key(
        self, tenant: str, *, label: str | None = None, limits: Limits | None = None
    ) -> tuple[ApiKey, str]:
        """A new key for `tenant` and its secret, which is not stored and never shown again."""
        limits = limits or Limits()
        if label is not None and len(label) > 200:
            raise UserError(f"key label is {len(label)} characters long; the maximum is 200")
        key_id = secrets.token_hex(6)
        secret = f"lg-{key_id}-{secrets.token_urlsafe(32)}"
        now = datetime.now(UTC)
        with self.store.write() as conn:
            _tenant_row(conn, tenant)
            conn.execute(
                sa.insert(api_keys).values(
                    id=key_id,
                    tenant=tenant,
                    secret_sha256=hash_secret(secret),
                    label=label,
                    created_at=now,
                    created_by=self.actor,
                    revoked_at=None,
                    **_limit_columns(limits),
                )
            )
            append_event(
                conn,
                actor=self.actor,
                action="key.create",
                target=f"key:{key_id}",
                after={"tenant": tenant, "label": label, "limits": limits.as_dict()},
            )
            _bump_version(conn)
        return ApiKey(key_id, tenant, label, limits, now, self.actor, None), secret

    def revoke_key(self, key_id: str) -> ApiKey:
        """Revoke a key; gateways refuse it once they have reloaded (next poll)."""
        now = datetime.now(UTC)
        with self.store.write() as conn:
            row = conn.execute(
                sa.select(api_keys).where(api_keys.c.id == key_id).with_for_update()
            ).first()
            if row is None:
                raise NotFound(
                    f"no API key with id '{key_id}'; see the keys with: lockgate keys list"
                )
            key = _key(row._mapping)
            if key.revoked_at is not None:
                raise UserError(
                    f"API key '{key_id}' was already revoked at {key.revoked_at.isoformat()}"
                )
            conn.execute(sa.update(api_keys).where(api_keys.c.id == key_id).values(revoked_at=now))
            append_event(
                conn,
                actor=self.actor,
                action="key.revoke",
                target=f"key:{key_id}",
                before={"tenant": key.tenant, "revoked_at": None},
                after={"tenant": key.tenant, "revoked_at": now.isoformat()},
            )
            _bump_version(conn)
        return dataclasses.replace(key, revoked_at=now)

    def list_keys(self, tenant: str | None = None) -> list[ApiKey]:
        """Keys (revoked ones included), oldest first, of one tenant or all."""
        query = sa.select(api_keys).order_by(api_keys.c.created_at, api_keys.c.id)
        with self.store.read() as conn:
            if tenant is not None:
                _tenant_row(conn, tenant)
                query = query.where(api_keys.c.tenant == tenant)
            return [_key(row._mapping) for row in conn.execute(query)]

    # -- what the gateway reads ----------------------------------------------------

    def config_version(self) -> int:
        """The counter every tenant/key change bumps (one tiny query)."""
        with self.store.read() as conn:
            version = conn.execute(
                sa.select(config_version.c.version).where(config_version.c.id == 1)
            ).scalar()
        return int(version or 0)

    def active_keys(self) -> dict[str, tuple[ApiKey, Tenant]]:
        """Every unrevoked key with its tenant, by the sha256 of its secret."""
        key_columns = [c.label(f"k_{c.name}") for c in api_keys.c]
        query = (
            sa.select(*key_columns, tenants)
            .join(tenants, tenants.c.name == api_keys.c.tenant)
            .where(api_keys.c.revoked_at.is_(None))
        )
        result: dict[str, tuple[ApiKey, Tenant]] = {}
        with self.store.read() as conn:
            for row in conn.execute(query):
                values = row._mapping
                key_values = {c.name: values[f"k_{c.name}"] for c in api_keys.c}
                result[key_values["secret_sha256"]] = (_key(key_values), _tenant(values))
        return result


class KeyCache:
    """The gateway's in-memory view of active keys: no database read per request.

    `lookup` is a sha256 and a dict lookup. `run` polls ``config_version`` every
    ``poll_s`` seconds (one tiny query per poll) and reloads everything when it changed,
    so a revoked key stops working within one poll interval on every replica.
    """

    def __init__(self, tenants: TenantStore, *, poll_s: float) -> None:
        if poll_s <= 0:
            raise ValueError("poll_s must be positive")
        self._tenants = tenants
        self._poll_s = poll_s
        self._keys: dict[str, tuple[ApiKey, Tenant]] = {}
        self._version: int | None = None
        self._invalidations = 0
        self._wake = asyncio.Event()

    @property
    def version(self) -> int | None:
        """The config version the cache holds (None before the first load)."""
        return self._version

    def __len__(self) -> int:
        return len(self._keys)

    def lookup(self, secret: str) -> tuple[ApiKey, Tenant] | None:
        """The key and tenant a secret belongs to, or None (unknown or revoked)."""
        return self._keys.get(hash_secret(secret))

    def refresh(self) -> None:
        """Reload every active key now (blocking; the poll loop runs it in a thread)."""
        # Read the version first: a change landing between the two reads is then seen
        # again by the next poll, never missed. An `invalidate` during the reload keeps
        # the version unknown, so the loop reloads once more.
        invalidations = self._invalidations
        version = self._tenants.config_version()
        self._keys = self._tenants.active_keys()
        self._version = version if invalidations == self._invalidations else None

    def invalidate(self) -> None:
        """Forget the loaded version and wake `run`, which reloads at once.

        For changes made by this process (lookups keep the old snapshot until the
        reload finishes; call `refresh` instead when the change must apply immediately).
        """
        self._invalidations += 1
        self._version = None
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until `stop` is set. Database errors are logged and retried, never raised."""
        failing = False
        while not stop.is_set():
            try:
                if self._version is None:
                    await asyncio.to_thread(self.refresh)
                else:
                    version = await asyncio.to_thread(self._tenants.config_version)
                    if version != self._version:
                        await asyncio.to_thread(self.refresh)
                if failing:
                    logger.info("key cache: config poll recovered (version %s)", self._version)
                    failing = False
            except (LockgateError, sa.exc.SQLAlchemyError) as exc:
                logger.warning(
                    "key cache: config poll failed; serving the keys loaded at version %s "
                    "and retrying in %ss: %s",
                    self._version,
                    self._poll_s,
                    exc,
                )
                failing = True
            await self._sleep(stop)

    async def _sleep(self, stop: asyncio.Event) -> None:
        self._wake.clear()
        stop_wait = asyncio.ensure_future(stop.wait())
        wake_wait = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait(
                {stop_wait, wake_wait}, timeout=self._poll_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            stop_wait.cancel()
            wake_wait.cancel()


# -- rows ----------------------------------------------------------------------------


def _bump_version(conn: sa.Connection) -> None:
    updated = conn.execute(
        sa.update(config_version)
        .where(config_version.c.id == 1)
        .values(version=config_version.c.version + 1)
    )
    if updated.rowcount == 0:
        # Migration 0004 inserts the row; recreate it if it was ever deleted. Writers are
        # already serialised by the audit head lock taken earlier in this transaction.
        conn.execute(sa.insert(config_version).values(id=1, version=1))


def _tenant_row(conn: sa.Connection, name: str, *, for_update: bool = False) -> Tenant:
    query = sa.select(tenants).where(tenants.c.name == name)
    if for_update:
        query = query.with_for_update()
    row = conn.execute(query).first()
    if row is None:
        raise NotFound(f"no tenant named '{name}'; see the tenants with: lockgate tenants list")
    return _tenant(row._mapping)


def _limit_columns(limits: Limits) -> dict[str, int | Decimal | None]:
    return {name: getattr(limits, name) for name in _LIMIT_FIELDS}


def _limits(values: Mapping[Any, Any]) -> Limits:
    return Limits(
        requests_per_minute=values["requests_per_minute"],
        tokens_per_minute=values["tokens_per_minute"],
        usd_per_day=_usd(values["usd_per_day"]),
        usd_per_month=_usd(values["usd_per_month"]),
    )


def _tenant(values: Mapping[Any, Any]) -> Tenant:
    return Tenant(
        name=values["name"],
        limits=_limits(values),
        created_at=as_utc(values["created_at"]),
        updated_at=as_utc(values["updated_at"]),
    )


def _key(values: Mapping[Any, Any]) -> ApiKey:
    revoked = values["revoked_at"]
    return ApiKey(
        id=values["id"],
        tenant=values["tenant"],
        label=values["label"],
        limits=_limits(values),
        created_at=as_utc(values["created_at"]),
        created_by=values["created_by"],
        revoked_at=as_utc(revoked) if revoked is not None else None,
    )


def _usd(value: Any) -> Decimal | None:
    if value is None:
        return None
    amount = Decimal(value).quantize(_USD_PLACES)
    # Drop trailing zeros without switching to exponent notation (500, not 5E+2).
    return amount.quantize(Decimal(1)) if amount == amount.to_integral() else amount.normalize()


def _usd_text(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")
