"""Reading a suite's cases from JSONL, CSV, Parquet or inline YAML.

Each row becomes a `Case`. Known fields: ``id``, ``input``, ``vars``, ``expected`` (or
``reference``), ``context`` and ``metadata``; any other field is a template variable, so a
CSV with columns ``ticket,customer,expected`` works without a ``vars`` column.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from lockgate.errors import MissingExtra, UserError
from lockgate.evals._types import Case

_KNOWN = {"id", "input", "vars", "expected", "reference", "context", "metadata"}


def cases_from_rows(rows: Iterable[tuple[str, Mapping[str, Any]]]) -> list[Case]:
    """Build cases from ``(where, row)`` pairs; `where` locates errors (``file:line``).

    Raises:
        UserError: a row is not a mapping, or two rows share an id.
    """
    cases: list[Case] = []
    seen: dict[str, str] = {}
    for position, (where, row) in enumerate(rows, start=1):
        if not isinstance(row, Mapping):
            raise UserError(
                f"{where}: a case must be a mapping of fields, got {type(row).__name__}"
            )
        case = _case(row, position, where)
        if case.id in seen:
            raise UserError(
                f"{where}: case id '{case.id}' is used twice (first at {seen[case.id]})"
            )
        seen[case.id] = where
        cases.append(case)
    if not cases:
        raise UserError("the dataset has no cases")
    return cases


def load_cases(data: bytes, *, name: str, fmt: str | None = None) -> list[Case]:
    """Parse dataset bytes; `name` (the file name) gives the format when `fmt` is None."""
    fmt = fmt or _format_of(name)
    if fmt == "jsonl":
        return cases_from_rows(_jsonl(data, name))
    if fmt == "csv":
        text = _text(data, name)
        reader = csv.DictReader(io.StringIO(text))
        return cases_from_rows((f"{name}:{i + 2}", row) for i, row in enumerate(reader))
    if fmt == "parquet":
        try:
            import pyarrow.parquet as pq
        except ModuleNotFoundError:
            raise MissingExtra("reading Parquet datasets", "parquet", "pyarrow") from None
        table = pq.read_table(io.BytesIO(data))
        return cases_from_rows((f"{name}: row {i + 1}", r) for i, r in enumerate(table.to_pylist()))
    raise UserError(f"{name}: unknown dataset format '{fmt}'; use .jsonl, .csv or .parquet")


def _case(row: Mapping[str, Any], position: int, where: str) -> Case:
    variables = row.get("vars") or {}
    if not isinstance(variables, Mapping):
        raise UserError(f"{where}: field 'vars' must be a mapping of template variables")
    extra = {k: v for k, v in row.items() if k not in _KNOWN}
    merged = {**extra, **variables}
    if "input" in row:
        merged.setdefault("input", row["input"])
    context = row.get("context")
    if isinstance(context, str):
        context = [context]
    elif context is not None and not isinstance(context, list):
        raise UserError(f"{where}: field 'context' must be a string or a list of strings")
    metadata = row.get("metadata") or {}
    if not isinstance(metadata, Mapping):
        raise UserError(f"{where}: field 'metadata' must be a mapping")
    return Case(
        id=str(row.get("id", position)),
        input=row.get("input"),
        vars=dict(merged),
        expected=row.get("expected", row.get("reference")),
        context=[str(c) for c in context] if context is not None else None,
        metadata=dict(metadata),
    )


def _jsonl(data: bytes, name: str) -> Iterable[tuple[str, Any]]:
    for number, line in enumerate(_text(data, name).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield f"{name}:{number}", json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(
                f"{name}:{number}: not valid JSON ({exc.msg}, column {exc.colno})"
            ) from None


def _text(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UserError(f"{name}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _format_of(name: str) -> str:
    suffix = Path(name).suffix.lower().lstrip(".")
    return {"jsonl": "jsonl", "ndjson": "jsonl", "csv": "csv", "parquet": "parquet"}.get(
        suffix, suffix
    )
