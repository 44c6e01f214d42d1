"""What a request's ``model`` names: a route, a provider model or alias, or a prompt.

``prompt:support-triage@production`` renders that prompt version with the request's
variables (``variables`` or ``metadata``) and applies its model, temperature, token limit,
stop sequences, response format and retrieval settings (to the ``documents`` the request
carries, see `lockgate.gateway._sources`); the request's own messages, if any, follow the
prompt's system text. Prompt versions are cached in memory for a few seconds, so a label
move reaches every replica within that time without a database read per request.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from lockgate.config import Settings
from lockgate.errors import BadReference, ConfigError, KindMismatch, NotFound, TemplateError
from lockgate.gateway._openai_io import ChatCall, GatewayError
from lockgate.gateway._sources import Selection, parse_documents, select
from lockgate.registry import Prompt, Registry
from lockgate.registry._prompt import Retrieval
from lockgate.store import Store

PROMPT_PREFIX = "prompt:"
PROMPT_TTL_S = 2.0


@dataclass
class Target:
    """A resolved request: what to call, with which messages and parameters."""

    requested: str
    model: str
    messages: list[dict[str, Any]]
    params: dict[str, Any]
    plan: Any
    prompt_ref: str | None = None
    retrieval: Retrieval | None = None  # the prompt's retrieval section
    sources: Selection | None = None  # what it kept of the request's documents

    @property
    def deployment(self) -> str:
        """The deployment tried first: token counts, the window and prices come from it."""
        deployments = self.plan.deployments
        return str(deployments[0]) if deployments else self.model


class TargetResolver:
    def __init__(self, settings: Settings, store: Store, router: Any) -> None:
        self.settings = settings
        self.registry = Registry(store, actor="gateway")
        self.router = router
        self._prompts: dict[str, tuple[float, Prompt]] = {}

    def resolve(self, call: ChatCall) -> Target:
        messages, params, model, prompt_ref = call.messages, dict(call.params), call.model, None
        retrieval, sources = None, None
        if call.model.startswith(PROMPT_PREFIX):
            prompt = self._prompt(call.model[len(PROMPT_PREFIX) :])
            prompt_ref = f"{prompt.name}@{prompt.version}"
            messages = self._render(prompt, call)
            params.update(_prompt_params(prompt))
            model = prompt.spec.model
            retrieval = prompt.spec.retrieval
        if call.documents is not None:
            if retrieval is None:
                what = f"prompt {prompt_ref}" if prompt_ref else f"model '{call.model}'"
                raise GatewayError(
                    400,
                    f"'documents' are read only by a prompt with a retrieval section, and "
                    f"{what} has none; drop 'documents' or target such a prompt",
                    param="documents",
                )
            sources = select(parse_documents(call.documents), retrieval)
        try:
            plan = self.router.plan(model, messages, params)
        except (NotFound, BadReference, ConfigError) as exc:
            raise GatewayError(404, str(exc), param="model", code="model_not_found") from None
        return Target(call.model, model, messages, params, plan, prompt_ref, retrieval, sources)

    def _prompt(self, ref: str) -> Prompt:
        cached = self._prompts.get(ref)
        if cached is not None and time.monotonic() - cached[0] < PROMPT_TTL_S:
            return cached[1]
        try:
            prompt = self.registry.load_prompt(ref)
        except (NotFound, BadReference, KindMismatch) as exc:
            raise GatewayError(404, str(exc), param="model", code="prompt_not_found") from None
        self._prompts[ref] = (time.monotonic(), prompt)
        return prompt

    def _render(self, prompt: Prompt, call: ChatCall) -> list[dict[str, Any]]:
        try:
            if not call.messages:
                return prompt.render(**call.variables)
            system = [
                m for m in prompt.render(**{"input": "", **call.variables}) if m["role"] == "system"
            ]
        except TemplateError as exc:
            raise GatewayError(400, str(exc), param="variables", code="bad_variables") from None
        return [*system, *call.messages]


def _prompt_params(prompt: Prompt) -> dict[str, Any]:
    spec = prompt.spec
    params: dict[str, Any] = {
        "temperature": spec.temperature,
        "top_p": spec.top_p,
        "max_tokens": spec.max_tokens,
        "stop": spec.stop,
        "seed": spec.seed,
    }
    if spec.response_format is not None:
        params["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": prompt.name, "schema": spec.response_format},
        }
    return {k: v for k, v in params.items() if v is not None}
