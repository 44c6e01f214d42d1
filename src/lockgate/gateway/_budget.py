"""A request's spending against its key's and tenant's limits: reserve the worst case
before the upstream call, settle to what it cost after (or release it when nothing was
spent). The counting lives in `lockgate.gateway._limits`; this module decides the
amounts."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from lockgate.accounting import cost
from lockgate.errors import LimitExceeded
from lockgate.gateway._call import Call
from lockgate.gateway._limits import Limiter, LimitScope, Reservation
from lockgate.gateway._openai_io import GatewayError
from lockgate.providers import ChatResult, Client, Usage

__all__ = ["Budget"]

# A request without max_tokens is reserved as if it could write this many.
DEFAULT_MAX_OUTPUT = 1024
# Streamed text the client received, in characters per token, when usage never arrived.
CHARS_PER_TOKEN = 4


class Budget:
    """Reservations for requests, priced with `client`, counted by `limiter`."""

    def __init__(self, limiter: Limiter, client: Client) -> None:
        self.limiter = limiter
        self.client = client

    async def reserve(
        self, call: Call, messages: list[dict[str, Any]], params: dict[str, Any]
    ) -> Reservation:
        """Reserve the input and the most the answer may cost, or a 429 saying which
        limit refused and when to retry."""
        target = call.target
        assert target is not None
        scopes = [
            LimitScope(f"key:{call.key_id}", call.key_limits),
            LimitScope(f"tenant:{call.tenant}", call.tenant_limits),
        ]
        if call.input_tokens is None:
            call.input_tokens = self.client.count_tokens(target.deployment, messages).tokens
        max_out = int(params.get("max_tokens") or DEFAULT_MAX_OUTPUT)
        usd = self._estimated_usd(target.deployment, call.input_tokens, max_out)
        try:
            return await self.limiter.acquire(scopes, tokens=call.input_tokens + max_out, usd=usd)
        except LimitExceeded as exc:
            raise GatewayError(
                429,
                str(exc),
                kind="rate_limit_exceeded",
                code=exc.limit,
                retry_after=exc.retry_after,
            ) from None

    async def settle(self, reservation: Reservation, result: ChatResult) -> None:
        """Replace the reservation by what the answer cost."""
        await self.limiter.settle(
            reservation, tokens=result.usage.total_tokens, usd=result.cost.usd
        )

    async def release(self, reservation: Reservation) -> None:
        """Nothing was spent: give the whole reservation back."""
        await self.limiter.release(reservation)

    async def settle_abandoned(self, call: Call, reservation: Reservation) -> None:
        """Settle a stream the client left: the input, and the output relayed so far at
        about four characters a token (the upstream's usage never arrived)."""
        assert call.target is not None
        input_tokens = call.input_tokens or 0
        output_tokens = -(-call.relayed_chars // CHARS_PER_TOKEN)
        usd = self._estimated_usd(call.target.deployment, input_tokens, output_tokens)
        await self.limiter.settle(reservation, tokens=input_tokens + output_tokens, usd=usd)

    def _estimated_usd(
        self, deployment: str, input_tokens: int, output_tokens: int
    ) -> Decimal | None:
        estimate = Usage(input_tokens=input_tokens, output_tokens=output_tokens, estimated=True)
        return cost(estimate, self.client.price(self.client.resolve(deployment))).usd
