"""Helpers shipped for tests, lockgate's own and its users': a scripted upstream server.

Example:
    >>> from lockgate.testing import Rule, ScriptedUpstream
    >>> with ScriptedUpstream([Rule(match=r"refund", reply="billing")]) as up:
    ...     base_url = up.url + "/v1"
"""

from __future__ import annotations

from lockgate.testing._process import ServedGateway, gateway_process, upstream_process
from lockgate.testing._upstream import ScriptedUpstream
from lockgate.testing._upstream_script import RecordedRequest, Rule, load_rules

__all__ = [
    "RecordedRequest",
    "Rule",
    "ScriptedUpstream",
    "ServedGateway",
    "gateway_process",
    "load_rules",
    "upstream_process",
]
