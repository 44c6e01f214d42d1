"""Prompt artifacts: the YAML teams already write, validated, and rendered to chat messages."""

from __future__ import annotations

from functools import cached_property
from typing import Any

import jinja2
from jinja2 import meta
from jinja2.sandbox import ImmutableSandboxedEnvironment
from pydantic import BaseModel, ConfigDict, Field, field_validator

from lockgate.errors import TemplateError

_ENV = ImmutableSandboxedEnvironment(
    undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=False
)


class StrictModel(BaseModel):
    """Base for every artifact schema: unknown fields are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Retrieval(StrictModel):
    """Which index to search and how many chunks to put in the context."""

    index: str = Field(min_length=1)
    top_k: int = Field(default=5, ge=1, le=1000)
    min_score: float | None = Field(default=None, ge=0, le=1)


class PromptSpec(StrictModel):
    """The prompt file format (see DESIGN.md); unknown fields are errors."""

    prompt_id: str
    model: str = Field(min_length=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    seed: int | None = None
    system: str | None = None
    template: str | None = None
    retrieval: Retrieval | None = None
    eval_suite: str | None = None
    response_format: dict[str, Any] | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    stop: str | list[str] | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("system", "template")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                _ENV.parse(value)
            except jinja2.TemplateSyntaxError as exc:
                raise ValueError(
                    f"Jinja2 syntax error on line {exc.lineno} of the text: {exc.message}"
                ) from None
        return value

    @field_validator("response_format")
    @classmethod
    def _is_json_schema(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            import jsonschema  # 10 MB of RSS, only for prompts with a response format

            validator = jsonschema.validators.validator_for(value)
            try:
                validator.check_schema(value)
            except jsonschema.SchemaError as exc:
                where = "/".join(str(p) for p in exc.path) or "(top level)"
                raise ValueError(f"not a valid JSON schema at {where}: {exc.message}") from None
        return value

    @field_validator("stop")
    @classmethod
    def _stop_not_empty(cls, value: str | list[str] | None) -> str | list[str] | None:
        if value is not None and (value == "" or value == [] or "" in value):
            raise ValueError("stop sequences must be non-empty strings")
        return value


class Prompt(BaseModel):
    """A prompt version from the registry, ready to render.

    Example:
        >>> prompt = load_prompt("support-triage@production")
        >>> prompt.render(input="I was charged twice")
        [{'role': 'system', 'content': 'You are …'}, {'role': 'user', 'content': 'I was …'}]
    """

    model_config = ConfigDict(frozen=True)

    name: str
    version: int
    digest: str
    spec: PromptSpec

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    @cached_property
    def variables(self) -> frozenset[str]:
        """Variables the system text and template use. Without a template: ``input``."""
        names: set[str] = set()
        for text in (self.spec.system, self.spec.template):
            if text is not None:
                names |= meta.find_undeclared_variables(_ENV.parse(text))
        if self.spec.template is None:
            names.add("input")
        return frozenset(names)

    def render(self, **variables: Any) -> list[dict[str, str]]:
        """Chat messages: the system text, then the rendered template as the user turn.

        Without a ``template``, the user turn is the ``input`` variable as given.

        Raises:
            TemplateError: a variable the text uses was not given.
        """
        messages: list[dict[str, str]] = []
        if self.spec.system is not None:
            messages.append(
                {"role": "system", "content": self._render(self.spec.system, variables)}
            )
        if self.spec.template is not None:
            user = self._render(self.spec.template, variables)
        elif "input" in variables:
            user = str(variables["input"])
        else:
            raise TemplateError(
                f"prompt {self.ref} has no template, so its user message is the 'input' "
                "variable: pass input=... (or add a template to the prompt file)"
            )
        messages.append({"role": "user", "content": user})
        return messages

    @cached_property
    def _templates(self) -> dict[str, jinja2.Template]:
        # Compiling is ~100x the cost of rendering; a prompt renders once per case.
        return {t: _ENV.from_string(t) for t in (self.spec.system, self.spec.template) if t}

    def _render(self, text: str, variables: dict[str, Any]) -> str:
        try:
            return self._templates[text].render(**variables)
        except jinja2.UndefinedError as exc:
            missing = sorted(self.variables - variables.keys())
            hint = f"; it needs: {', '.join(missing)}" if missing else ""
            raise TemplateError(f"prompt {self.ref}: {exc.message}{hint}") from None
        except jinja2.exceptions.SecurityError as exc:
            raise TemplateError(f"prompt {self.ref}: unsafe template operation: {exc}") from None
        except (jinja2.TemplateError, TypeError, ValueError, ArithmeticError, LookupError) as exc:
            # The template's own expressions failed on these variables ({{ input + 1 }}).
            raise TemplateError(
                f"prompt {self.ref}: the template failed on these variables: "
                f"{type(exc).__name__}: {exc}"
            ) from None
