"""The ``vkey`` stage: answers ``<path_prefix>/<provider>/<rest>`` by forwarding to the provider with
the team's real key in place of the caller's virtual key, reading token usage as the answer streams.

It should come early in the pipeline (before ``auth``): gateway callers are sandboxes holding a
virtual key, not browsers holding a session.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime

import orjson
from aiohttp import web

from plugins.auth import user_directory
from proxy_core import (
    ErrorRenderer,
    Readiness,
    Stage,
    StageContext,
    Timeouts,
    UpstreamError,
    UpstreamRequest,
    error_response,
)
from proxy_core.db import BatchWriter, StoreError, database
from proxy_core.tasks import BackgroundJobs

from .activity import Activity
from .cache import KEY_CACHE, KeyCache
from .checker import KeyChecker
from .config import VKeyConfig
from .credentials import ConflictingKeys, find_key, swap_headers, swap_query
from .errors import Shape, provider_error
from .keys import KeyRecord, KeyRejected
from .ledger import COLUMNS, USAGE_WRITER, UsageLedger, UsageRow
from .limits import Limits, SpendTracker
from .pricing import PriceTable
from .providers import Provider, load_providers
from .tap import UsageTap

log = logging.getLogger(__name__)

_READABLE_ENCODINGS = ("gzip", "deflate", "identity")


class VKeyStage(Stage[VKeyConfig]):
    name = "vkey"

    def __init__(self, config: VKeyConfig, context: StageContext) -> None:
        super().__init__(config, context)
        self.providers = load_providers(config.providers)
        db = database(context)  # before the writer: resources close in reverse, so it flushes first
        writer = context.resource(USAGE_WRITER, lambda: BatchWriter(db, "usage", COLUMNS))
        self.ledger = UsageLedger(db, writer)
        cache = context.resource(KEY_CACHE, KeyCache)
        users = user_directory(context)
        users.subscribe(lambda changed: cache.forget_user(changed.user.id))
        self.keys = KeyChecker(db, cache, config.key_cache_seconds, users)
        self.limits = Limits(config.limits, SpendTracker(self.ledger, config.spend_refresh_seconds))
        self.prices = PriceTable(config.prices)
        self.activity = Activity(config.activity_flush_seconds)
        self.forwarder = context.forwarder
        self.timeouts = Timeouts(config.connect_timeout, config.read_timeout, config.idle_timeout)
        self.body_limit = self.forwarder.body_limit
        self._prefix = config.path_prefix + "/"
        self._renderers = {shape: _renderer(shape) for shape in ("openai", "anthropic", "gemini", "composio")}
        metrics = context.metrics
        self.m_requests = metrics.counter(
            "vkey_requests_total",
            "Gateway requests forwarded, by provider and status.",
            ("provider", "status"),
        )
        self.m_refused = metrics.counter(
            "vkey_refused_total", "Gateway requests refused, by provider and reason.", ("provider", "reason")
        )
        self.m_tokens = metrics.counter(
            "vkey_tokens_total",
            "Tokens reported by providers, by provider and direction.",
            ("provider", "kind"),
        )
        self.m_cost = metrics.counter("vkey_cost_usd_total", "Spend in USD, by provider.", ("provider",))
        self.m_overhead = metrics.histogram(
            "vkey_overhead_seconds",
            "Time spent in the gateway before forwarding.",
            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05),
        )

    async def lifespan(self, app: web.Application) -> AsyncIterator[None]:
        async with BackgroundJobs(self.name) as jobs:
            jobs.start("activity", self.activity.run)
            yield

    async def readiness(self) -> Readiness:
        missing = sorted(p.name for p in self.providers.values() if p.real_key is None)
        return Readiness(True, f"no real key for: {', '.join(missing)}" if missing else "")

    def routes(self) -> Sequence[web.AbstractRouteDef]:
        """The gateway: answered here, behind the earlier stages only (nothing after it sees these)."""
        return [web.route("*", self._prefix + "{tail:.*}", self._serve)]

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        if not request.raw_path.startswith(self._prefix):  # matched only once decoded: not ours
            return error_response(request, 404, "Nothing is served at this address.")
        name, _, rest = request.raw_path[len(self._prefix) :].partition("/")
        path, _, query = ("/" + rest).partition("?")
        provider = self.providers.get(name)
        if provider is None:
            return error_response(request, 404, "Unknown provider.")
        shape = provider.shape
        if _has_dot_segments(path):
            return self._refuse(provider, 404, "No such path.", "path")
        try:
            presented = find_key(request.headers, query)
        except ConflictingKeys:
            return self._refuse(provider, 401, "Invalid API key", "conflicting")
        if presented is None:
            return self._refuse(provider, 401, "Missing API key", "missing")
        try:
            record = await self.keys.check(presented.key)
        except KeyRejected as rejected:
            return self._refuse(provider, 401, rejected.message, rejected.reason)
        except StoreError as exc:
            return self._unavailable(provider, exc)
        if provider.real_key is None:
            message = f"The gateway has no key for {provider.name}."
            return self._refuse(provider, 503, message, "unconfigured")
        if self.body_limit.declared_too_large(request):
            return self._too_large(provider)
        body: bytes | None = None
        if shape == "openai" and request.method == "POST" and path.endswith("/chat/completions"):
            body = await self.body_limit.read(request)
            if body is None:
                return self._too_large(provider)
        try:
            refusal = await self.limits.check(record)
        except StoreError as exc:
            return self._unavailable(provider, exc)
        if refusal is not None:
            self.m_refused.inc((provider.name, refusal.reason))
            return provider_error(
                shape,
                refusal.status,
                refusal.message,
                retry_after=refusal.retry_after,
                retryable=refusal.retryable,
            )

        new_query = swap_query(query, presented, provider.real_key)
        base = provider.upstream.prefix  # SDKs whose base URL is the host add ".../v1" themselves
        sent = path[len(base) :] if base and path.startswith(base + "/") else path
        target = f"{sent}?{new_query}" if new_query else sent
        outgoing = self.forwarder.build(request, provider.upstream, path=target)
        swap_headers(outgoing.headers, presented, provider.real_key)
        _offer_readable_encodings(outgoing)
        strip = False
        if body is not None:
            outgoing.body, strip = _with_usage_requested(body)
            if strip:  # the extra chunk can only be cut out of a stream the gateway can read
                outgoing.headers["Accept-Encoding"] = "identity"
        tap = UsageTap(shape, strip_usage=strip)
        overhead = time.perf_counter() - started
        tap.extra_headers["x-gateway-overhead-ms"] = f"{overhead * 1000:.3f}"
        self.m_overhead.observe(overhead)
        self.activity.record(record.user_id)
        status = 499
        try:
            response = await self.forwarder.send(
                request,
                outgoing,
                stage=self.name,
                timeouts=self.timeouts,
                tap=tap,
                on_error=self._renderers[shape],
            )
            status = tap.status or response.status
            return response
        finally:
            self._account(record, provider, path, tap, status, started)

    def _account(
        self, record: KeyRecord, provider: Provider, path: str, tap: UsageTap, status: int, started: float
    ) -> None:
        """Record the request's usage row; runs even when the client left mid-stream."""
        usage = tap.report.result()
        if not usage.model and "/models/" in path:  # Gemini names the model in the path
            usage = replace(usage, model=path.rsplit("/models/", 1)[1].split(":", 1)[0])
        cost = self.prices.cost(usage)
        self.m_requests.inc((provider.name, str(status)))
        if usage.reported:
            self.m_tokens.inc((provider.name, "input"), usage.input_tokens)
            self.m_tokens.inc((provider.name, "output"), usage.output_tokens)
        if cost:
            self.m_cost.inc((provider.name,), cost)
        self.limits.spend.finished(record.user_id, usage.total_tokens, cost or 0.0)
        row = UsageRow(
            user_id=record.user_id,
            key_id=record.id,
            provider=provider.name,
            model=usage.model,
            tokens_in=usage.input_tokens,
            tokens_out=usage.output_tokens,
            cached_tokens=usage.cached_tokens,
            cache_write_tokens=usage.cache_write_tokens,
            reported=usage.reported,
            cost_usd=cost,
            status=status,
            latency_ms=round((time.perf_counter() - started) * 1000),
            created_at=datetime.now(UTC),
        )
        try:
            self.ledger.record(row)
        except Exception:
            log.exception("could not queue the usage row of key %s", record.prefix)

    def _refuse(self, provider: Provider, status: int, message: str, reason: str) -> web.Response:
        self.m_refused.inc((provider.name, reason))
        return provider_error(provider.shape, status, message)

    def _unavailable(self, provider: Provider, exc: StoreError) -> web.Response:
        log.warning("vkey: the store cannot answer: %s", exc.message)
        return self._refuse(provider, 503, "The gateway cannot check keys right now.", "store")

    def _too_large(self, provider: Provider) -> web.Response:
        return self._refuse(provider, 413, self.body_limit.message, "too_large")


def _renderer(shape: Shape) -> ErrorRenderer:
    def render(request: web.Request, error: UpstreamError) -> web.StreamResponse:
        return provider_error(shape, error.status, f"{error.message} (gateway)")

    return render


def _has_dot_segments(path: str) -> bool:
    if "." not in path and "%" not in path:
        return False
    segments = path.lower().replace("%2e", ".").replace("%2f", "/").split("/")
    return any(segment in (".", "..") for segment in segments)


def _offer_readable_encodings(outgoing: UpstreamRequest) -> None:
    """Offer the provider only encodings whose bodies the gateway can read usage from (the client's
    own preference among them is kept)."""
    accepted = outgoing.headers.get("Accept-Encoding")
    if accepted is None:
        return
    kept = [
        part.strip()
        for part in accepted.split(",")
        if part.split(";", 1)[0].strip().lower() in _READABLE_ENCODINGS
    ]
    outgoing.headers["Accept-Encoding"] = ", ".join(kept) or "identity"


def _with_usage_requested(body: bytes) -> tuple[bytes, bool]:
    """The chat-completion body with ``stream_options.include_usage`` set when it streams and the
    client did not ask for usage itself; True when the gateway added it (so the tap strips it)."""
    try:
        request = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body, False
    if not isinstance(request, dict) or request.get("stream") is not True:
        return body, False
    options = request.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage") is True:
        return body, False
    request["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
    return orjson.dumps(request), True
