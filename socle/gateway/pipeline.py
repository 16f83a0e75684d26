"""The governed request pipeline: the order of steps lives here, where a reader sees it at once.

    authenticate (dependency) ─► resolve model ─► authorize (key, model access) ─► validate
        ─► classify & route ─► reserve
        ◄─ record usage & metrics ◄─ settle or release ◄─ engine (via router, allowed zones only) ◄─┘

``reserve`` (:meth:`Pipeline._reserve`) counts the request in its rate limits and reserves its worst
case in its budgets, atomically (:mod:`socle.governance.quotas`); ``settle`` (:meth:`Pipeline._finish`)
charges what the engine really used, or releases everything if the call failed before any output, on
every way a call can end: success, error, end of stream, client disconnect.

``classify & route`` (:meth:`Pipeline._route`) sets the request's data classification (the highest of
its team's default, the ``X-Socle-Classification`` header and whatever earlier steps raised with
:meth:`Call.raise_classification`) and keeps only the engines in zones that classification allows
(:mod:`socle.governance.residency`); with none, the request is refused with 403 and the denial is
reported. The decision is kept on ``call.residency`` for the audit trail. Steps that learn something
about the data (retrieved documents, input guardrails) call ``raise_classification`` *before* this
step; a raise after it is recorded but cannot re-route a request already sent.

Audit (fail closed): ``_admit`` refuses at once (503) while the audit log cannot be written, and
``_finish`` appends the request's entry (:meth:`Pipeline.record_audit`: an ``inference.request``, or an
``access.denied`` for a 403/429) before the answer is returned; if that entry cannot be written, the
answer is withheld and the client gets 503 (a stream gets an error event instead of ``[DONE]``). The
entry records the routing decision, the classification, the guardrail decisions and what other steps
add to ``Call.trace`` (``retrieved_chunks``).

Later steps slot into :meth:`Pipeline._admit` and :meth:`Pipeline._finish`;
routes never repeat them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import numpy as np
import orjson

from socle.config import Settings
from socle.engines.base import ChatInput, CompletionInput, Delta, Engine, Generated, SamplingParams, Usage
from socle.engines.router import Pool, Router, close_stream
from socle.errors import (
    AuditUnavailableError,
    BadRequestError,
    PermissionDeniedError,
    ResidencyError,
    SocleError,
    UnsupportedError,
)
from socle.gateway.auditing import audit_event
from socle.governance.access import ModelAccess
from socle.governance.audit.log import AuditLog
from socle.governance.guardrails import Guard, GuardState, guard_stream
from socle.governance.identity import Principal
from socle.governance.money import Spend, cost_nano_eur
from socle.governance.quotas import Hold, Quotas, prompt_bound
from socle.governance.residency import Classification, Classified, Residency, ResidencyDenial, RoutingDecision
from socle.observability.metrics import Metrics
from socle.observability.usage import UsageRecord, UsageRecorder
from socle.protocol import ChatCompletionRequest, CompletionRequest, EmbeddingRequest

__all__ = ["Call", "Pipeline"]


@dataclass(slots=True)
class Call:
    """What one request did, filled in as it goes through the pipeline."""

    request_id: str
    endpoint: str
    principal: Principal
    started: float = field(default_factory=time.perf_counter)
    pool: Pool | None = None
    engine: Engine | None = None
    ttft: float | None = None
    usage: Usage = field(default_factory=lambda: Usage(0, 0))
    hold: Hold | None = None
    """What the request reserved in budgets and rate limits, until it is settled."""
    chunks: int = 0
    """Text deltas streamed to the client (the charge of a stream cut before the engine's count)."""
    classified: Classified = field(default_factory=Classified)
    """The request's data classification so far, with every reason that raised it."""
    residency: RoutingDecision | None = None
    """Where the request could go and where it went (set by the routing step)."""

    def raise_classification(self, level: Classification, reason: str) -> None:
        """Raise the request's classification to ``level`` (never lowers it), saying why."""
        self.classified.raise_to(level, reason)

    @property
    def classification(self) -> Classification:
        return self.classified.level

    guard: GuardState | None = None
    """Guardrail policy, version and decisions (``guard.decisions``: what the audit records)."""
    prompt: Any = None
    """What was sent to the engine (messages, prompt or inputs): HMAC'd in the audit entry."""
    output: list[str] = field(default_factory=list)
    """The answer's text, as it was produced: HMAC'd in the audit entry."""
    trace: dict[str, Any] = field(default_factory=dict)
    """Decisions other steps record for the audit entry: ``retrieved_chunks``, ``guardrails``,
    ``routing``, ``classification``."""
    audited: bool = False

    @property
    def model(self) -> str:
        return self.pool.name if self.pool else ""

    @property
    def engine_name(self) -> str:
        return self.engine.config.name if self.engine else ""


class Pipeline:
    def __init__(
        self,
        settings: Settings,
        router: Router,
        metrics: Metrics,
        usage: UsageRecorder,
        quotas: Quotas | None = None,
        access: ModelAccess | None = None,
        guard: Guard | None = None,
        *,
        audit: AuditLog | None = None,
        residency: Residency,
    ) -> None:
        self.settings = settings
        self.router = router
        self.metrics = metrics
        self.usage = usage
        self.quotas = quotas
        self.access = access
        self.residency = residency
        self.guard = guard
        self.audit = audit

    # Steps ----------------------------------------------------------------------------------------
    async def _admit(
        self, call: Call, model: str, max_tokens: int | None = None, n: int | None = None
    ) -> Pool:
        """Resolve the model and check the principal may use it (its key's ``allowed_models`` and its
        team's model access); validate what engines cannot."""
        if self.audit is not None:
            self.audit.ensure_available()
        pool = self.router.resolve(model)
        call.pool = pool
        principal = call.principal
        allowed = principal.allowed_models
        if allowed is not None and not ({pool.name, *pool.aliases} & allowed):
            raise PermissionDeniedError(
                f"Your key may not use the model {pool.name!r}.", code="model_not_allowed", param="model"
            )
        if self.access is not None:
            await self.access.check(principal.team_id, principal.team_name, pool.name)
        if n is not None and n != 1:
            raise UnsupportedError("Only n=1 is supported.", param="n")
        if max_tokens is not None and max_tokens > self.settings.max_tokens_limit:
            raise BadRequestError(
                f"max_tokens is {max_tokens}; the largest allowed is {self.settings.max_tokens_limit}.",
                param="max_tokens",
            )
        return pool

    async def _route(self, call: Call, pool: Pool, capability: str) -> None:
        """Classify the request and keep the engines its classification allows; 403 if there are none."""
        residency = self.residency
        await residency.classify(call.classified, call.principal.team_id)
        decision = residency.policy.decide(pool, capability, call.classified)
        call.residency = decision
        if not decision.candidates:
            denial = ResidencyDenial(call.request_id, call.principal, pool.name, decision)
            await residency.sink.residency_denied(denial)
            raise decision.refusal(pool.name)

    def _routing(self, call: Call) -> dict[str, Any]:
        """The router's residency arguments for this call: allowed zones, failover record."""
        decision = call.residency
        if decision is None:  # every endpoint routes first: refuse rather than send anywhere
            raise ResidencyError("This request was not classified; it cannot be routed.")
        return {"zones": decision.allowed_zones, "on_failover": decision.failed}

    async def _guard_input(
        self, call: Call, messages: tuple[dict[str, Any], ...]
    ) -> tuple[dict[str, Any], ...]:
        """Guardrails on the input (raises 400 on ``block``); long texts are scanned off the event loop."""
        guard = self.guard
        if guard is None:
            return messages
        call.guard = state = await guard.start(
            call.principal.principal_id,
            call.principal.team_name,
            call.principal.team_id,
            call.raise_classification,
        )
        if sum(len(str(m.get("content") or "")) for m in messages) < 2000:
            return guard.guard_messages(messages, state)
        return await asyncio.to_thread(guard.guard_messages, messages, state)

    def _guard_output(self, call: Call, result: Generated) -> Generated:
        if self.guard is None or call.guard is None:
            return result
        text, cut = self.guard.guard_output(result.text, call.guard)
        return Generated(text, "length" if cut else result.finish_reason, result.usage)

    async def _reserve(
        self, call: Call, pool: Pool, prompt_tokens: Callable[[], int], max_tokens: int | None
    ) -> int | None:
        """Count the request in its rate limits and reserve its worst case in its budgets (raises 429 or
        503). Returns the max_tokens to send: the request's, or, if it set none and something was
        reserved, the output bound reserved (so that the reservation bounds the engine)."""
        quotas = self.quotas
        if quotas is None:
            return max_tokens
        allowed = call.residency.candidates if call.residency is not None else None
        engines = [slot.engine.config for slot in pool.slots if allowed is None or slot.name in allowed]
        call.hold = await quotas.admit(
            call.principal,
            pool.name,
            lambda: quotas.worst_case(engines, prompt_tokens(), max_tokens),
            request_id=call.request_id,
        )
        if call.hold is not None and max_tokens is None:
            return call.hold.worst.output_tokens
        return max_tokens

    async def _finish(self, call: Call, status: int, error: SocleError | None = None) -> None:
        """Record usage and metrics for a finished call (success or failure), settle or release what it
        reserved (without holding the answer back: the worst case stays reserved until then), then append
        its audit entry (even if the caller is cancelled meanwhile: the entry is queued before the first
        wait)."""
        if call.residency is not None and call.engine is not None:
            call.residency.chose(call.engine.config.name, call.engine.config.zone)
        self._record(call, status, error)
        try:
            hold, call.hold = call.hold, None
            if hold is not None and self.quotas is not None:
                await self.quotas.finish(hold, _spent(call, hold), wait=False)
        finally:
            await self.record_audit(call, status, error)

    async def record_audit(self, call: Call, status: int, error: SocleError | None) -> None:
        """Append the call's audit entry once (nothing if ``error`` is already on the record); raises
        :class:`AuditUnavailableError` if it cannot. Steps outside the pipeline (knowledge) call it for
        calls that end before reaching the engine."""
        if self.audit is None or call.audited or isinstance(error, AuditUnavailableError):
            return
        if error is not None and error.audited:
            return
        call.audited = True
        principal = call.principal
        content = None
        if call.prompt is not None and self.audit.stores_content(principal.team_id, principal.team_name):
            content = {"prompt": call.prompt, "response": "".join(call.output)}
        await self.audit.record(audit_event(call, status, error, self.audit), content=content)

    def _record(self, call: Call, status: int, error: SocleError | None) -> None:
        seconds = time.perf_counter() - call.started
        team = call.principal.team_name
        self.metrics.observe(
            endpoint=call.endpoint,
            model=call.model,
            engine=call.engine_name,
            team=team,
            status=status,
            seconds=seconds,
            ttft=call.ttft,
            tokens_in=call.usage.prompt_tokens,
            tokens_out=call.usage.completion_tokens,
            error_code=error.code if error is not None else None,
        )
        cost = Decimal(0)
        zone = ""
        if call.engine is not None:  # priced as budgets price it, exactly
            zone = call.engine.config.zone
            nano = cost_nano_eur(call.engine.config, call.usage.prompt_tokens, call.usage.completion_tokens)
            cost = Decimal(nano).scaleb(-9)
        self.usage.record(
            UsageRecord(
                request_id=call.request_id,
                key_id=call.principal.key_id,
                principal_id=call.principal.principal_id,
                team_id=call.principal.team_id,
                model=call.model,
                engine=call.engine_name,
                zone=zone,
                endpoint=call.endpoint,
                prompt_tokens=call.usage.prompt_tokens,
                completion_tokens=call.usage.completion_tokens,
                cost_eur=cost,
                latency_ms=seconds * 1000,
                ttft_ms=call.ttft * 1000 if call.ttft is not None else None,
                status_code=status,
            )
        )

    async def _run(self, call: Call, capability: str, fn: Any) -> Generated:
        assert call.pool is not None
        try:
            result, call.engine = await self.router.call(call.pool, capability, fn, **self._routing(call))
            call.usage = result.usage
            result = self._guard_output(call, result)
        except SocleError as exc:
            await self._finish(call, exc.status_code, exc)
            raise
        call.output.append(result.text)
        await self._finish(call, 200)
        return result

    # Endpoints ------------------------------------------------------------------------------------
    async def chat(self, call: Call, body: ChatCompletionRequest) -> dict[str, Any] | AsyncIterator[bytes]:
        max_tokens = body.requested_max_tokens()
        try:
            pool = await self._admit(call, body.model, max_tokens, body.n)
            messages = await self._guard_input(call, _messages(body))
            await self._route(call, pool, "chat")
            max_tokens = await self._reserve(
                call,
                pool,
                lambda: prompt_bound([m["content"] for m in messages], messages=len(messages)),
                max_tokens,
            )
        except SocleError as exc:
            await self._finish(call, exc.status_code, exc)
            raise
        call.prompt = list(messages)
        request = ChatInput(model=pool.name, messages=messages, params=_params(body, max_tokens))
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return await self._stream(call, "chat", lambda e: e.chat_stream(request), include_usage)

        async def run(engine: Engine) -> Generated:
            return await engine.chat(request)

        result = await self._run(call, "chat", run)
        return {
            "id": "chatcmpl-" + call.request_id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": pool.name,
            "system_fingerprint": None,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": result.text, "refusal": None},
                    "logprobs": None,
                    "finish_reason": result.finish_reason,
                }
            ],
            "usage": _usage(result.usage),
        }

    async def completion(self, call: Call, body: CompletionRequest) -> dict[str, Any] | AsyncIterator[bytes]:
        try:
            pool = await self._admit(call, body.model, body.max_tokens, body.n)
            prompt = _single_prompt(body)
            prompt = (await self._guard_input(call, ({"role": "user", "content": prompt},)))[0]["content"]
            await self._route(call, pool, "completion")
            max_tokens = await self._reserve(call, pool, lambda: prompt_bound([prompt]), body.max_tokens)
        except SocleError as exc:
            await self._finish(call, exc.status_code, exc)
            raise
        call.prompt = prompt
        request = CompletionInput(model=pool.name, prompt=prompt, params=_params(body, max_tokens))
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return await self._stream(
                call, "completion", lambda e: e.completion_stream(request), include_usage
            )

        async def run(engine: Engine) -> Generated:
            return await engine.complete(request)

        result = await self._run(call, "completion", run)
        return {
            "id": "cmpl-" + call.request_id,
            "object": "text_completion",
            "created": int(time.time()),
            "model": pool.name,
            "system_fingerprint": None,
            "choices": [
                {
                    "index": 0,
                    "text": (prompt if body.echo else "") + result.text,
                    "logprobs": None,
                    "finish_reason": result.finish_reason,
                }
            ],
            "usage": _usage(result.usage),
        }

    async def embeddings(self, call: Call, body: EmbeddingRequest) -> dict[str, Any]:
        try:
            pool = await self._admit(call, body.model)
            texts = body.texts()
            if not texts or any(not isinstance(t, str) or not t for t in texts):
                raise BadRequestError(
                    "input must be a non-empty string or a list of non-empty strings.", param="input"
                )
            guarded = await self._guard_input(call, tuple({"role": "user", "content": t} for t in texts))
            texts = [m["content"] for m in guarded]  # what the policy lets through is what is embedded
            call.prompt = texts
            await self._route(call, pool, "embeddings")
            await self._reserve(call, pool, lambda: prompt_bound(texts, messages=len(texts)), 0)
        except SocleError as exc:
            await self._finish(call, exc.status_code, exc)
            raise
        try:
            result, call.engine = await self.router.call(
                pool, "embeddings", lambda e: e.embed(pool.name, texts), **self._routing(call)
            )
        except SocleError as exc:
            await self._finish(call, exc.status_code, exc)
            raise
        call.usage = Usage(result.prompt_tokens, 0)
        vectors = result.vectors
        if body.dimensions is not None and vectors and body.dimensions != len(vectors[0]):
            error = BadRequestError(
                f"This model produces {len(vectors[0])}-dimensional vectors; dimensions={body.dimensions} "
                "is not supported.",
                param="dimensions",
            )
            await self._finish(call, 400, error)
            raise error
        await self._finish(call, 200)
        data = [
            {"object": "embedding", "index": i, "embedding": _encode_vector(v, body.encoding_format)}
            for i, v in enumerate(vectors)
        ]
        return {
            "object": "list",
            "data": data,
            "model": pool.name,
            "usage": {"prompt_tokens": result.prompt_tokens, "total_tokens": result.prompt_tokens},
        }

    # Streaming ------------------------------------------------------------------------------------
    async def _stream(
        self, call: Call, capability: str, open_stream: Any, include_usage: bool
    ) -> AsyncIterator[bytes]:
        """Open the engine stream now (so errors before the first token are plain HTTP errors),
        then return the SSE body generator."""
        assert call.pool is not None
        try:
            deltas, call.engine = await self.router.stream(
                call.pool, capability, open_stream, **self._routing(call)
            )
        except SocleError as exc:
            await self._finish(call, exc.status_code, exc)
            raise
        if self.guard is not None and call.guard is not None:
            deltas = guard_stream(deltas, self.guard, call.guard)
        return self._sse(call, capability, deltas, include_usage)

    async def _sse(
        self, call: Call, capability: str, deltas: AsyncIterator[Delta], include_usage: bool
    ) -> AsyncIterator[bytes]:
        chat = capability == "chat"
        base = {
            "id": ("chatcmpl-" if chat else "cmpl-") + call.request_id,
            "object": "chat.completion.chunk" if chat else "text_completion",
            "created": int(time.time()),
            "model": call.model,
            "system_fingerprint": None,
        }
        status, error = 200, None
        try:
            if chat:
                yield _event(base, _choice(chat, {"role": "assistant", "content": ""}, None), include_usage)
            async for delta in deltas:
                if call.ttft is None and delta.text:
                    call.ttft = time.perf_counter() - call.started
                if delta.usage is not None:
                    call.usage = delta.usage
                if delta.text:
                    call.chunks += 1
                    call.output.append(delta.text)
                    piece = {"content": delta.text} if chat else delta.text
                    yield _event(base, _choice(chat, piece, None), include_usage)
                if delta.finish_reason is not None:
                    yield _event(base, _choice(chat, {} if chat else "", delta.finish_reason), include_usage)
            await self.record_audit(
                call, 200, None
            )  # before [DONE]: an answer whose entry fails ends in an error
            if include_usage:
                yield b"data: " + orjson.dumps({**base, "choices": [], "usage": _usage(call.usage)}) + b"\n\n"
            yield b"data: [DONE]\n\n"
        except SocleError as exc:
            status, error = exc.status_code, exc
            yield b"data: " + orjson.dumps(exc.to_dict()) + b"\n\n"
        except BaseException:
            status = 499  # client went away (cancelled) or a bug; either way the stream is over
            raise
        finally:
            try:
                await close_stream(deltas)
            finally:
                with contextlib.suppress(AuditUnavailableError):  # the outage is counted and alerted
                    await self._finish(call, status, error)  # settles in a task of its own, even if cancelled


def _spent(call: Call, hold: Hold) -> Spend | None:
    """What a finished call is charged: the engine's count; for a stream cut before it, the prompt bound
    plus one token per streamed chunk; ``None`` (release everything) if no engine produced anything."""
    if call.engine is None:
        return None
    usage = call.usage
    if usage.total_tokens == 0:
        if call.chunks == 0:
            return None
        usage = Usage(hold.worst.prompt_tokens, call.chunks)
    nano = cost_nano_eur(call.engine.config, usage.prompt_tokens, usage.completion_tokens)
    return Spend(usage.total_tokens, nano)


def _params(body: ChatCompletionRequest | CompletionRequest, max_tokens: int | None) -> SamplingParams:
    return SamplingParams(
        max_tokens=max_tokens,
        temperature=body.temperature,
        top_p=body.top_p,
        stop=tuple(body.stop_list()),
        seed=body.seed,
        presence_penalty=body.presence_penalty,
        frequency_penalty=body.frequency_penalty,
    )


def _messages(body: ChatCompletionRequest) -> tuple[dict[str, Any], ...]:
    try:
        return tuple({"role": m.role, "content": m.text()} for m in body.messages)
    except ValueError as exc:
        raise BadRequestError(str(exc), param="messages") from exc


def _single_prompt(body: CompletionRequest) -> str:
    if body.suffix:
        raise UnsupportedError("suffix is not supported.", param="suffix")
    if isinstance(body.prompt, str):
        return body.prompt
    if len(body.prompt) == 1:
        return body.prompt[0]
    raise UnsupportedError(
        "Send one prompt per request (a list with several prompts is not supported).", param="prompt"
    )


def _choice(chat: bool, piece: Any, finish: str | None) -> dict[str, Any]:
    if chat:
        return {"index": 0, "delta": piece, "logprobs": None, "finish_reason": finish}
    return {"index": 0, "text": piece, "logprobs": None, "finish_reason": finish}


def _event(base: dict[str, Any], choice: dict[str, Any], include_usage: bool) -> bytes:
    chunk = {**base, "choices": [choice]}
    if include_usage:
        chunk["usage"] = None
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


def _usage(usage: Usage) -> dict[str, int]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }


def _encode_vector(vector: list[float], encoding: str) -> list[float] | str:
    if encoding == "base64":
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()
    return vector
