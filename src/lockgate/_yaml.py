"""YAML loading that remembers where every value came from.

Users write prompts, suites and config by hand; when one is wrong the error must name the
file, the field and the line. PyYAML's composed node tree carries line marks, so we load
the data *and* a map from field path (``("retrieval", "top_k")``) to 1-based line.
Duplicate keys, which PyYAML silently accepts, are reported as errors.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydantic
import yaml

from lockgate.errors import Problem

Loc = tuple[str | int, ...]


@dataclass
class Located:
    """Parsed YAML data plus the line of every field path in it."""

    data: Any
    path: Path | None = None
    lines: dict[Loc, int] = field(default_factory=dict)

    def line_of(self, loc: Sequence[str | int]) -> int | None:
        """The line of `loc`, or of its nearest enclosing field when `loc` is absent."""
        key = tuple(loc)
        while key:
            if key in self.lines:
                return self.lines[key]
            key = key[:-1]
        return self.lines.get((), None)


def parse_yaml(text: str, path: Path | None = None) -> tuple[Located, list[Problem]]:
    """Parse YAML text; return the located data and any duplicate-key problems.

    Raises:
        yaml.YAMLError: the text is not YAML (callers turn it into a `Problem`).
    """
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    located = Located(data=None, path=path)
    problems: list[Problem] = []
    if node is None:
        return located, problems
    located.lines[()] = node.start_mark.line + 1
    _walk(node, (), located.lines, problems, path)
    located.data = yaml.safe_load(text)
    return located, problems


def load_yaml_file(path: Path) -> Located:
    """Read and parse a YAML file; any problem becomes a located `InvalidArtifact`-ready list.

    Raises:
        YamlProblems: the file cannot be read or parsed.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise YamlProblems([Problem("file not found", path=path)]) from None
    except UnicodeDecodeError as exc:
        raise YamlProblems([Problem(f"not UTF-8 text ({exc.reason})", path=path)]) from None
    except OSError as exc:
        raise YamlProblems([Problem(f"cannot read file: {exc.strerror}", path=path)]) from None
    try:
        located, problems = parse_yaml(text, path)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        context_mark = getattr(exc, "context_mark", None)
        reason = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        if context_mark is not None and "<stream end>" in reason:
            # An unclosed bracket or quote: the useful line is where it was opened.
            mark = context_mark
            reason += f" ({getattr(exc, 'context', 'opened here')})"
        line = mark.line + 1 if mark is not None else None
        raise YamlProblems([Problem(f"malformed YAML: {reason}", path=path, line=line)]) from None
    if problems:
        raise YamlProblems(problems)
    return located


class YamlProblems(Exception):
    """Internal carrier for problems found while loading YAML; callers re-raise typed errors."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(map(str, problems)))
        self.problems = problems


def _walk(
    node: yaml.Node,
    loc: Loc,
    lines: dict[Loc, int],
    problems: list[Problem],
    path: Path | None,
) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in seen:
                problems.append(
                    Problem(
                        f"duplicate key (first defined on line {seen[key]})",
                        path=path,
                        line=line,
                        field=dotted((*loc, key)),
                    )
                )
            seen[key] = line
            lines[(*loc, key)] = line
            _walk(value_node, (*loc, key), lines, problems, path)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[(*loc, index)] = item.start_mark.line + 1
            _walk(item, (*loc, index), lines, problems, path)


def dotted(loc: Iterable[str | int]) -> str:
    """``("scorers", 0, "name")`` → ``scorers[0].name``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def pydantic_problems(
    exc: pydantic.ValidationError,
    located: Located,
    *,
    prefix: Loc = (),
) -> list[Problem]:
    """Turn a pydantic validation error into located, human-worded problems."""
    problems = []
    for err in exc.errors(include_url=False):
        loc = tuple(p for p in err["loc"] if isinstance(p, str | int))
        full = (*prefix, *loc)
        kind = err["type"]
        if kind == "extra_forbidden":
            message = "unknown field; remove it or check its spelling"
        elif kind == "missing":
            message = "required field is missing"
        else:
            message = err["msg"]
            if message.startswith("Value error, "):
                message = message[len("Value error, ") :]
        problems.append(
            Problem(message, path=located.path, line=located.line_of(full), field=dotted(full))
        )
    return problems
