"""Fixtures shared by the provider tests: one scripted upstream per module, reset per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lockgate.testing import ScriptedUpstream


@pytest.fixture(scope="module")
def server() -> Iterator[ScriptedUpstream]:
    with ScriptedUpstream(latency=0.0) as upstream:
        yield upstream


@pytest.fixture
def up(server: ScriptedUpstream) -> ScriptedUpstream:
    """The module's upstream with no rules and no recorded requests."""
    server.set_rules([])
    server.reset()
    return server
