"""Traces: one row per gateway request, written off the request path, and queried later.

`TraceWriter` owns a bounded in-memory queue. `TraceWriter.submit` is synchronous and
never touches the database: the request handler hands its record over and moves on. A
background task takes batches (up to ``batch_size`` records, or whatever arrived within
``flush_interval_s`` of the first one) and inserts each batch in one transaction, in a
worker thread so the event loop never waits on SQLite or PostgreSQL.

What happens when things go wrong — never a silent drop:

- **Queue full** (the database is slower than the traffic): the record is not queued. It
  is *dropped from the queue*: counted in `TraceWriter.dropped`, reported to ``on_drop``
  (wired to ``lockgate_trace_queue_dropped_total``), and appended to a JSONL spill file
  under ``spill_dir`` (``HOME/trace-spill``). `submit` returns False. The spill file is
  imported into the database when the writer stops (after the queue has drained) and
  again when a writer starts, so a dropped record is delayed, not lost.
- **Database error during a flush**: the batch is retried with exponential backoff
  (``retry_delays``); if every attempt fails, the batch is spilled like a full queue's
  overflow and counted the same way.
- **No spill directory, or the spill file cannot be written**: the records are really
  lost. They are counted in `TraceWriter.lost` (and in ``dropped``) and logged at ERROR.
- **Submitted after `stop`**: treated like a full queue (spilled for the next start).

Importing is idempotent: a record whose id is already in the table is skipped, so a crash
between inserting and deleting a spill file, or a commit whose acknowledgement was lost
before a retry, never duplicates a trace. Each writer appends to its own spill file and
holds an exclusive lock on it while open, so a replica starting next to a running one
never imports (and deletes) a file that is still being written.

Example:
    >>> writer = TraceWriter.from_settings(store, settings)
    >>> await writer.start()
    >>> writer.submit(TraceRecord(endpoint="chat.completions", status=200, latency_ms=12.5))
    >>> await writer.stop()  # drains: everything submitted so far is written
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import IO, Any, Literal

import sqlalchemy as sa

from lockgate.config import Settings
from lockgate.errors import NotFound, StoreError, UserError
from lockgate.store import Store
from lockgate.store._tables import as_utc, traces

__all__ = [
    "TraceRecord",
    "TraceWriter",
    "UsageBy",
    "UsageRow",
    "get_trace",
    "list_traces",
    "usage",
]

_log = logging.getLogger(__name__)

UsageBy = Literal["day", "model", "route", "prompt"]

_NANO = Decimal("0.000000001")
_SPILL_GLOB = "spill-*.jsonl"


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _new_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True, kw_only=True)
class TraceRecord:
    """One gateway request, as stored in the ``traces`` table.

    Attributes:
        cost_usd: None when the price of the model is unknown — never 0 in that case.
        cache: ``hit``, ``miss``, ``semantic``, ``bypass``, or None (not cacheable).
        details: everything else worth keeping (fallbacks tried, the auto-route decision,
            trimming, guard findings); stored as JSON text.
    """

    endpoint: str
    status: int
    latency_ms: float
    id: str = field(default_factory=_new_id)
    at: datetime = field(default_factory=_utcnow)
    tenant: str | None = None
    key_id: str | None = None
    route: str | None = None
    prompt_ref: str | None = None
    requested_model: str | None = None
    resolved_model: str | None = None
    error: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    tokens_estimated: bool = False
    cost_usd: Decimal | None = None
    ttft_ms: float | None = None
    overhead_ms: float | None = None
    cache: str | None = None
    stream: bool = False
    user: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_row(self) -> dict[str, Any]:
        """Column values for an insert: UTC time, JSON details, strings cut to fit."""
        # A shallow copy: asdict() deep-copies `details` and cost ~0.1 ms per record.
        row = {name: getattr(self, name) for name in _FIELD_NAMES}
        row["at"] = _utc(self.at)
        row["details"] = json.dumps(self.details, sort_keys=True, default=str)
        for name, limit in _STRING_LIMITS.items():
            value = row[name]
            if isinstance(value, str) and len(value) > limit:
                # PostgreSQL refuses an over-long value, which would sink the whole batch.
                row[name] = value[: limit - 1] + "…"
        return row

    @classmethod
    def from_row(cls, row: sa.RowMapping | dict[str, Any]) -> TraceRecord:
        values = dict(row)
        values["at"] = as_utc(values["at"])
        values["details"] = json.loads(values["details"]) if values.get("details") else {}
        cost = values.get("cost_usd")
        if cost is not None:
            values["cost_usd"] = Decimal(cost).quantize(_NANO)
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (ISO time, cost as a decimal string)."""
        data = {name: getattr(self, name) for name in _FIELD_NAMES}
        data["at"] = _utc(self.at).isoformat()
        data["cost_usd"] = None if self.cost_usd is None else format(self.cost_usd, "f")
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TraceRecord:
        values = {f.name: data[f.name] for f in fields(cls) if f.name in data}
        values["at"] = as_utc(datetime.fromisoformat(values["at"]))
        if values.get("cost_usd") is not None:
            values["cost_usd"] = Decimal(values["cost_usd"])
        return cls(**values)


_FIELD_NAMES = tuple(f.name for f in fields(TraceRecord))

_STRING_LIMITS = {
    c.name: c.type.length
    for c in traces.columns
    if isinstance(c.type, sa.String) and c.type.length is not None
}


class TraceWriter:
    """Batches trace records into the database from a background task.

    Args:
        store: where the ``traces`` table lives.
        queue_size: records held in memory before `submit` starts spilling.
        batch_size: most records per insert transaction.
        flush_interval_s: longest wait for a batch to fill once a record is queued.
        spill_dir: where overflow and failed batches go as JSONL (None: count, log, lose).
        on_drop: called with the number of records that missed the queue or a flush.
        retry_delays: seconds to wait before each retry of a failed flush.
    """

    def __init__(
        self,
        store: Store,
        *,
        queue_size: int,
        batch_size: int,
        flush_interval_s: float,
        spill_dir: Path | None = None,
        on_drop: Callable[[int], None] | None = None,
        retry_delays: Sequence[float] = (0.1, 0.5, 2.0),
    ) -> None:
        self._store = store
        self._queue: asyncio.Queue[TraceRecord] = asyncio.Queue(maxsize=queue_size)
        self._batch_size = batch_size
        self._flush_interval = flush_interval_s
        self._spill_dir = spill_dir
        self._on_drop = on_drop
        self._retry_delays = tuple(retry_delays)
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._item_ready = asyncio.Event()
        self._batch_ready = asyncio.Event()
        self._spill_lock = threading.Lock()
        self._spill_file: IO[str] | None = None
        self._spill_path: Path | None = None
        self.written = 0
        """Rows this writer inserted (including re-imported spill records)."""
        self.flushes = 0
        """Insert transactions committed."""
        self.dropped = 0
        """Records that missed the queue or a flush (then spilled, or lost)."""
        self.spilled = 0
        """Of the dropped records, those saved to the spill file."""
        self.lost = 0
        """Of the dropped records, those that could not be saved anywhere."""

    @classmethod
    def from_settings(
        cls, store: Store, settings: Settings, *, on_drop: Callable[[int], None] | None = None
    ) -> TraceWriter:
        """A writer sized by ``settings.gateway``, spilling to ``HOME/trace-spill``."""
        gateway = settings.gateway
        return cls(
            store,
            queue_size=gateway.trace_queue_size,
            batch_size=gateway.trace_batch_size,
            flush_interval_s=gateway.trace_flush_interval_s,
            spill_dir=settings.home / "trace-spill",
            on_drop=on_drop,
        )

    @property
    def pending(self) -> int:
        """Records queued and not yet written."""
        return self._queue.qsize()

    async def start(self) -> None:
        """Import spill files left by earlier runs, then start the background flusher."""
        if self._task is not None:
            return
        await asyncio.to_thread(self._import_spills)
        self._closing = False
        self._task = asyncio.create_task(self._run(), name="lockgate-trace-writer")

    async def stop(self) -> None:
        """Write everything queued, close the spill file and import it if possible."""
        self._closing = True
        self._item_ready.set()
        self._batch_ready.set()
        if self._task is not None:
            task, self._task = self._task, None
            await task
        elif not self._queue.empty():
            await self._run()  # never started: drain here
        self._close_spill()
        await asyncio.to_thread(self._import_spills)

    def submit(self, record: TraceRecord) -> bool:
        """Queue a record for writing; never waits. False when it had to be spilled."""
        if not self._closing:
            try:
                self._queue.put_nowait(record)
            except asyncio.QueueFull:
                pass
            else:
                self._item_ready.set()
                if self._queue.qsize() >= self._batch_size:
                    self._batch_ready.set()
                return True
        self._drop([record], "the trace queue is full" if not self._closing else "stopped")
        return False

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if self._queue.empty():
                if self._closing:
                    return
                self._item_ready.clear()
                await self._item_ready.wait()
                continue
            if self._queue.qsize() < self._batch_size and not self._closing:
                self._batch_ready.clear()
                deadline = loop.time() + self._flush_interval
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout_at(deadline):
                        await self._batch_ready.wait()
            batch = [self._queue.get_nowait() for _ in range(min(self._batch_size, self.pending))]
            await self._flush(batch)

    async def _flush(self, batch: list[TraceRecord]) -> None:
        rows, good = [], []
        for record in batch:
            try:
                rows.append(record.to_row())
            except (TypeError, ValueError) as exc:
                # A record that cannot be stored at all (a bug upstream); keep the rest.
                self._count_drop(1, lost=1)
                _log.error("trace %s lost: it cannot be serialised (%s)", record.id, exc)
            else:
                good.append(record)
        if not rows:
            return
        for attempt in range(len(self._retry_delays) + 1):
            try:
                self.written += await asyncio.to_thread(self._insert, rows)
            except (sa.exc.SQLAlchemyError, StoreError) as exc:
                failure: Exception = exc
            else:
                self.flushes += 1
                return
            if attempt < len(self._retry_delays):
                delay = self._retry_delays[attempt]
                _log.warning(
                    "writing %d traces failed (%s); retrying in %.1fs", len(rows), failure, delay
                )
                await asyncio.sleep(delay)
        self._drop(good, f"the database refused the batch ({failure})")

    def _insert(self, rows: list[dict[str, Any]]) -> int:
        """Insert rows in one transaction; on a duplicate id, insert only the new ones."""
        try:
            with self._store.write() as conn:
                conn.execute(sa.insert(traces), rows)
            return len(rows)
        except sa.exc.IntegrityError:
            with self._store.write() as conn:
                ids = [r["id"] for r in rows]
                existing = set(conn.scalars(sa.select(traces.c.id).where(traces.c.id.in_(ids))))
                fresh = [r for r in rows if r["id"] not in existing]
                if fresh:
                    conn.execute(sa.insert(traces), fresh)
            return len(fresh)

    def _drop(self, records: list[TraceRecord], reason: str) -> None:
        try:
            saved = self._spill(records)
        except (OSError, TypeError, ValueError) as exc:
            saved = False
            reason = f"{reason}; the spill file failed: {exc}"
        if saved:
            self._count_drop(len(records), lost=0)
        else:
            self._count_drop(len(records), lost=len(records))
            _log.error("%d traces lost: %s, and there is no spill file", len(records), reason)

    def _count_drop(self, count: int, *, lost: int) -> None:
        self.dropped += count
        self.spilled += count - lost
        self.lost += lost
        if self._on_drop is not None:
            self._on_drop(count)

    def _spill(self, records: Iterable[TraceRecord]) -> bool:
        if self._spill_dir is None:
            return False
        with self._spill_lock:
            if self._spill_file is None:
                self._spill_dir.mkdir(parents=True, exist_ok=True)
                self._spill_path = self._spill_dir / f"spill-{uuid.uuid4().hex}.jsonl"
                handle = self._spill_path.open("a", encoding="utf-8")
                _lock(handle, blocking=True)
                self._spill_file = handle
            for record in records:
                self._spill_file.write(json.dumps(record.to_json(), default=str) + "\n")
            self._spill_file.flush()
        return True

    def _close_spill(self) -> None:
        with self._spill_lock:
            if self._spill_file is not None:
                self._spill_file.close()
                self._spill_file = None

    def _import_spills(self) -> None:
        """Insert the records of every spill file no live writer holds; delete the file."""
        if self._spill_dir is None or not self._spill_dir.is_dir():
            return
        for path in sorted(self._spill_dir.glob(_SPILL_GLOB)):
            try:
                handle = path.open("r", encoding="utf-8")
            except FileNotFoundError:
                continue  # another replica imported it first
            with handle:
                if not _lock(handle, blocking=False):
                    continue  # still being written by a running writer
                records = _read_spill(path, handle)
                try:
                    for start in range(0, len(records), self._batch_size):
                        rows = [r.to_row() for r in records[start : start + self._batch_size]]
                        self.written += self._insert(rows)
                        self.flushes += 1
                except (sa.exc.SQLAlchemyError, StoreError) as exc:
                    _log.warning("could not import spilled traces from %s yet: %s", path, exc)
                    return
                path.unlink(missing_ok=True)
            _log.info("imported %d spilled traces from %s", len(records), path)


def _read_spill(path: Path, handle: IO[str]) -> list[TraceRecord]:
    records = []
    for number, line in enumerate(handle, start=1):
        if not line.strip():
            continue
        try:
            records.append(TraceRecord.from_json(json.loads(line)))
        except (ValueError, TypeError, KeyError) as exc:
            # A line cut short by a crash mid-write; the rest of the file is still good.
            _log.error("%s:%d: skipping an unreadable spilled trace (%s)", path, number, exc)
    return records


def _lock(handle: IO[str], *, blocking: bool) -> bool:
    """An exclusive advisory lock on an open file (always granted where there is none)."""
    if sys.platform == "win32":
        return True
    import fcntl

    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except BlockingIOError:
        return False
    return True


# --- queries -----------------------------------------------------------------------------


@dataclass(frozen=True)
class UsageRow:
    """Requests, tokens and cost of one group (a UTC day, a model, a route or a prompt).

    ``cost_usd`` sums the requests whose price is known; ``unknown_cost_requests`` counts
    the others, whose cost is not included (and not assumed to be 0).
    """

    group: str | None
    requests: int
    errors: int
    input_tokens: int
    output_tokens: int
    cost_usd: Decimal
    unknown_cost_requests: int


def list_traces(
    store: Store,
    *,
    tenant: str | None = None,
    route: str | None = None,
    model: str | None = None,
    status: int | None = None,
    since: datetime | None = None,
    limit: int = 50,
) -> list[TraceRecord]:
    """Traces matching every given filter, newest first.

    ``model`` matches the requested or the resolved model; ``since`` is inclusive.
    """
    query = sa.select(traces).order_by(traces.c.at.desc(), traces.c.id.desc()).limit(limit)
    if tenant is not None:
        query = query.where(traces.c.tenant == tenant)
    if route is not None:
        query = query.where(traces.c.route == route)
    if model is not None:
        query = query.where(
            sa.or_(traces.c.resolved_model == model, traces.c.requested_model == model)
        )
    if status is not None:
        query = query.where(traces.c.status == status)
    if since is not None:
        query = query.where(traces.c.at >= _utc(since))
    with store.read() as conn:
        return [TraceRecord.from_row(row) for row in conn.execute(query).mappings()]


def get_trace(store: Store, trace_id: str) -> TraceRecord:
    """A trace by id or unique id prefix (at least 6 characters, unless only one matches).

    Raises:
        NotFound: no trace has that id.
        UserError: the prefix matches several traces.
    """
    query = sa.select(traces).where(traces.c.id.startswith(trace_id, autoescape=True)).limit(2)
    with store.read() as conn:
        rows = conn.execute(query).mappings().all()
    if not rows or (len(trace_id) < 6 and len(rows) != 1):
        raise NotFound(f"no trace '{trace_id}'; see: lockgate traces list")
    if len(rows) > 1:
        raise UserError(f"trace id prefix '{trace_id}' is ambiguous; give more characters")
    return TraceRecord.from_row(rows[0])


def usage(
    store: Store, *, tenant: str, by: UsageBy, since: datetime | None = None
) -> list[UsageRow]:
    """A tenant's requests, errors (status ≥ 400), tokens and cost, grouped in SQL.

    Days are UTC calendar days (``YYYY-MM-DD``), oldest first; other groupings come
    most-requested first. A model group is the resolved model, or the requested one
    when the request never resolved.
    """
    dialect = store.dialect
    group = _group_expression(by, dialect).label("grp")
    if dialect == "sqlite":
        # SQLite keeps NUMERIC as a float: sum whole nanodollars to stay exact.
        cost_sum: sa.ColumnElement[Any] = sa.func.sum(
            sa.cast(sa.func.round(traces.c.cost_usd * 1_000_000_000), sa.BigInteger)
        )
    else:
        cost_sum = sa.func.sum(traces.c.cost_usd)
    query = (
        sa.select(
            group,
            sa.func.count().label("requests"),
            sa.func.sum(sa.case((traces.c.status >= 400, 1), else_=0)).label("errors"),
            sa.func.sum(traces.c.input_tokens).label("input_tokens"),
            sa.func.sum(traces.c.output_tokens).label("output_tokens"),
            cost_sum.label("cost"),
            sa.func.sum(sa.case((traces.c.cost_usd.is_(None), 1), else_=0)).label("unknown"),
        )
        .where(traces.c.tenant == tenant)
        .group_by(group)
    )
    if since is not None:
        query = query.where(traces.c.at >= _utc(since))
    with store.read() as conn:
        result = conn.execute(query).all()
    rows = []
    for grp, requests, errors, input_tokens, output_tokens, cost, unknown in result:
        if cost is None:
            total = Decimal(0)
        elif dialect == "sqlite":
            total = Decimal(int(cost)).scaleb(-9)
        else:
            total = Decimal(cost)
        rows.append(
            UsageRow(
                group=None if grp is None else str(grp),
                requests=int(requests),
                errors=int(errors or 0),
                input_tokens=int(input_tokens or 0),
                output_tokens=int(output_tokens or 0),
                cost_usd=total.quantize(_NANO),
                unknown_cost_requests=int(unknown or 0),
            )
        )
    if by == "day":
        return sorted(rows, key=lambda r: r.group or "")
    return sorted(rows, key=lambda r: (-r.requests, r.group or ""))


def _group_expression(by: UsageBy, dialect: str) -> sa.ColumnElement[Any]:
    if by == "day":
        if dialect == "sqlite":
            # Stored as 'YYYY-MM-DD HH:MM:SS…' text, always in UTC (see TraceRecord.to_row).
            return sa.func.date(traces.c.at)
        return sa.func.to_char(sa.func.timezone("UTC", traces.c.at), "YYYY-MM-DD")
    if by == "model":
        return sa.func.coalesce(traces.c.resolved_model, traces.c.requested_model)
    if by == "route":
        return traces.c.route
    if by == "prompt":
        return traces.c.prompt_ref
    raise UserError(f"cannot group usage by '{by}'; use day, model, route or prompt")


def _utc(value: datetime) -> datetime:
    return as_utc(value).astimezone(UTC)
