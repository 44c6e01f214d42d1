"""The script of a `ScriptedUpstream`: rules, their matching, and recorded requests.

Kept apart from the HTTP code so the matching logic reads (and can be tested) on its own.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from lockgate.errors import ConfigError, Problem

__all__ = ["RecordedRequest", "Rule", "Script", "load_rules"]

Reply = str | dict[str, Any] | list[Any]


@dataclass(frozen=True)
class Rule:
    """One line of the script: when a request matches, how the upstream answers.

    `match` is a regular expression searched (`re.search`) in the text of the last user
    message; ``None`` matches every request. The first rule that matches and whose `times`
    is not used up answers. Embedding requests are matched against their inputs joined by
    newlines, so a script can also make ``/v1/embeddings`` fail or slow down.

    Example:
        >>> Rule(match=r"flaky", status=429, retry_after=1.5, times=2)  # doctest: +ELLIPSIS
        Rule(match='flaky', ...)

    Attributes:
        match: regex searched in the last user message, or None for any request.
        reply: the assistant text; a dict or list is sent as JSON text; None means the
            upstream's `default_reply`.
        status: HTTP status; anything but 200 answers with an error body.
        retry_after: seconds written as given in the ``Retry-After`` header of an error.
        error_type: the error body's ``type`` (default derived from `status`).
        error_message: the error body's ``message``.
        error_code: the OpenAI error body's ``code`` (e.g. ``context_length_exceeded``).
        times: how many requests this rule answers before it stops matching; None is
            unlimited.
        delay: seconds to wait before answering (on top of the upstream's latency).
        hang: accept the request and never answer, until the server stops; with `body`,
            send the body, then keep the response open without ending it.
        drop_after_chunks: streaming: send this many content chunks, then cut the
            connection (no final chunk, no ``[DONE]``); not streaming: cut the connection
            without any response.
        chunks: how many content chunks a streamed reply is split into (default: one per
            word, whitespace kept).
        chunk_interval: seconds between streamed content chunks.
        usage: (prompt_tokens, completion_tokens) to report; default counts whitespace
            words of all messages / of the reply (at least 1).
        finish_reason: OpenAI finish reason; with `tool_calls`, ``"stop"`` is reported as
            ``"tool_calls"`` the way OpenAI does.
        tool_calls: OpenAI-shaped tool calls to answer with (``arguments`` may be a dict).
        body: sent verbatim as the response body, with `status` and `headers`, instead of
            a generated answer: for malformed JSON, odd error shapes or a hand-written
            event stream (give ``content-type: text/event-stream`` in `headers`).
        headers: extra response headers (e.g. ``x-ratelimit-reset-requests``, or
            ``location`` for a redirect); with `body`, a ``content-type`` of JSON is
            added unless given, and ``Retry-After`` when `retry_after` is set.
    """

    match: str | None = None
    reply: Reply | None = None
    status: int = 200
    retry_after: float | None = None
    error_type: str | None = None
    error_message: str | None = None
    error_code: str | None = None
    times: int | None = None
    delay: float = 0.0
    hang: bool = False
    drop_after_chunks: int | None = None
    chunks: int | None = None
    chunk_interval: float = 0.0
    usage: tuple[int, int] | None = None
    finish_reason: str = "stop"
    tool_calls: Sequence[Mapping[str, Any]] | None = None
    body: str | bytes | None = None
    headers: Mapping[str, str] | None = None
    _pattern: re.Pattern[str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 100 <= self.status <= 599:
            raise ValueError(f"status must be an HTTP status code, got {self.status}")
        for name in ("times", "drop_after_chunks"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        if self.chunks is not None and self.chunks < 1:
            raise ValueError(f"chunks must be >= 1, got {self.chunks}")
        if self.delay < 0 or self.chunk_interval < 0:
            raise ValueError("delay and chunk_interval must be >= 0")
        if self.usage is not None:
            # YAML gives lists; keep the declared tuple type.
            object.__setattr__(self, "usage", (int(self.usage[0]), int(self.usage[1])))
        pattern = re.compile(self.match) if self.match is not None else None
        object.__setattr__(self, "_pattern", pattern)

    def matches(self, text: str) -> bool:
        """Whether this rule's regex is found in `text` (ignoring `times`)."""
        return self._pattern is None or self._pattern.search(text) is not None

    def reply_text(self, default: str) -> str | None:
        """The assistant content: JSON text for dict/list replies; None for a bare tool call."""
        if self.reply is None:
            return None if self.tool_calls else default
        if isinstance(self.reply, str):
            return self.reply
        return json.dumps(self.reply, ensure_ascii=False)

    def openai_tool_calls(self) -> list[dict[str, Any]] | None:
        """`tool_calls` in OpenAI's wire shape: ids filled in, arguments as JSON text."""
        if not self.tool_calls:
            return None
        calls = []
        for i, call in enumerate(self.tool_calls):
            function = dict(call.get("function", {}))
            arguments = function.get("arguments", "{}")
            if not isinstance(arguments, str):
                function["arguments"] = json.dumps(arguments, ensure_ascii=False)
            calls.append(
                {
                    "id": call.get("id", f"call_{i}"),
                    "type": call.get("type", "function"),
                    "function": function,
                }
            )
        return calls

    def effective_finish_reason(self) -> str:
        if self.tool_calls and self.finish_reason == "stop":
            return "tool_calls"
        return self.finish_reason


DEFAULT_RULE = Rule()


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the upstream received it; `headers` keys are lower-case.

    `body` is the parsed JSON object, or None when there was no body or it was not a
    JSON object. `client` is the peer as ``host:port``: requests that share it came over
    one (kept-alive) connection.
    """

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None
    client: str | None = None


class Script:
    """The rules in force and how often each has answered; safe to use from any thread."""

    def __init__(self, rules: Iterable[Rule]) -> None:
        self._lock = threading.Lock()
        self._rules: tuple[Rule, ...] = ()
        self._used: list[int] = []
        self.replace(rules)

    def replace(self, rules: Iterable[Rule]) -> None:
        """Put `rules` in force, with fresh `times` counters."""
        new = tuple(rules)
        for rule in new:
            if not isinstance(rule, Rule):
                raise TypeError(f"expected Rule, got {type(rule).__name__}")
        with self._lock:
            self._rules = new
            self._used = [0] * len(new)

    def pick(self, text: str) -> Rule:
        """The first rule that matches `text` and is not used up (counting this use)."""
        with self._lock:
            for i, rule in enumerate(self._rules):
                if rule.times is not None and self._used[i] >= rule.times:
                    continue
                if rule.matches(text):
                    self._used[i] += 1
                    return rule
        return DEFAULT_RULE


def content_text(content: Any) -> str:
    """The text of a message `content`: a string, or the text of its parts joined by newlines.

    Understands OpenAI parts (``{"type": "text", "text": …}``) and Anthropic blocks,
    including the text inside ``tool_result`` blocks.
    """
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    texts = []
    for part in content:
        if not isinstance(part, dict):
            continue
        if isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif part.get("type") == "tool_result":
            texts.append(content_text(part.get("content")))
    return "\n".join(texts)


def last_user_text(messages: Sequence[Any]) -> str:
    """The text of the last message with role ``user`` ("" when there is none)."""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return content_text(message.get("content"))
    return ""


def count_words(*texts: str) -> int:
    """A deterministic token stand-in: whitespace-separated words, at least 1."""
    return max(1, sum(len(text.split()) for text in texts))


def split_chunks(text: str, chunks: int | None) -> list[str]:
    """Split `text` into streamed pieces that concatenate back to it exactly.

    Default: one piece per word, each carrying the whitespace that follows it.
    """
    if not text:
        return [""]
    if chunks is None:
        return re.split(r"(?<=\s)(?=\S)", text)
    n = min(chunks, len(text))
    size, extra = divmod(len(text), n)
    pieces, start = [], 0
    for i in range(n):
        end = start + size + (1 if i < extra else 0)
        pieces.append(text[start:end])
        start = end
    return pieces


_FIELDS = {f.name for f in fields(Rule) if f.init}


def rules_from_data(data: Any, path: Path | None = None) -> list[Rule]:
    """Rules from parsed YAML/JSON: a list of mappings of `Rule` fields.

    Raises:
        ConfigError: the data is not a list of valid rule mappings.
    """
    if data is None:
        return []
    if not isinstance(data, list):
        raise ConfigError([Problem("a rules script must be a list of rules", path=path)])
    rules, problems = [], []
    for i, item in enumerate(data):
        where = f"[{i}]"
        if not isinstance(item, dict):
            problems.append(Problem("each rule must be a mapping", path=path, field=where))
            continue
        unknown = sorted(set(item) - _FIELDS)
        if unknown:
            message = f"unknown rule fields: {', '.join(map(str, unknown))}"
            problems.append(Problem(message, path=path, field=where))
            continue
        try:
            rules.append(Rule(**item))
        except (TypeError, ValueError, re.error) as exc:
            problems.append(Problem(str(exc), path=path, field=where))
    if problems:
        raise ConfigError(problems)
    return rules


def load_rules(path: str | Path) -> list[Rule]:
    """Read a rules script (YAML: a list of `Rule` field mappings).

    Raises:
        ConfigError: the file is missing, is not YAML, or holds invalid rules.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError([Problem(f"cannot read file: {exc.strerror}", path=path)]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([Problem(f"malformed YAML: {exc}", path=path)]) from None
    return rules_from_data(data, path)
