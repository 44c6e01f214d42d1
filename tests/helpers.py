"""Small helpers shared by tests (not fixtures)."""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

from lockgate.cli import main

DESIGN_PROMPT = """\
prompt_id: support-triage-v4
model: gpt-class-foundation-model
temperature: 0.2
system: |
  You are a support triage assistant. Classify the ticket into
  one of: billing, technical, account, other. Return JSON only.
retrieval:
  index: kb-support-2024q4
  top_k: 5
eval_suite: support-triage-eval-v4
"""


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


@dataclass
class CliResult:
    code: int
    out: str
    err: str


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> CliResult:
    capsys.readouterr()
    code = main(list(args))
    captured = capsys.readouterr()
    return CliResult(code, captured.out, captured.err)


T = TypeVar("T")


class FakeSleep:
    """Records the waits instead of waiting (pass it as a retry loop's `sleep`)."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


async def collect(stream: AsyncIterable[T]) -> list[T]:
    """Everything an async stream yields, in order."""
    return [item async for item in stream]
