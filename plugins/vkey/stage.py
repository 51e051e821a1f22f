"""The ``vkey`` stage: answers ``<path_prefix>/<provider>/<rest>`` by forwarding to the provider with
the team's real key in place of the caller's virtual key, reading token usage as the answer streams.

It should come early in the pipeline (before ``auth``): gateway callers are sandboxes holding a
virtual key, not browsers holding a session.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
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
    prefix_route,
)
from proxy_core.db import BatchWriter, StoreError, database
from proxy_core.tasks import BackgroundJobs

from .activity import Activity
from .cache import KEY_CACHE, KeyCache
from .checker import KeyChecker
from .config import VKeyConfig
from .credentials import ConflictingKeys, find_key, swap_headers, swap_query
from .errors import Shape, provider_error
from .estimate import billable, completed
from .keys import KeyRecord, KeyRejected
from .ledger import COLUMNS, USAGE_WRITER, UsageLedger, UsageRow
from .limits import Limits, SpendTracker, requests_per_minute
from .operations import MAX_BODY, operation, reads_body, tool_of
from .pricing import PriceTable
from .providers import Provider, load_providers
from .tap import FAILURE_STATUS, UrlRewrite, UsageTap

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
        spend = SpendTracker(self.ledger, config.spend_refresh_seconds)
        self.limits = Limits(config.limits, spend, requests_per_minute(config.limits, db))
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
        self.m_estimated = metrics.counter(
            "vkey_estimated_total",
            "Requests whose usage was estimated (the stream ended before the provider's count).",
            ("provider",),
        )
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
        return [prefix_route(self.config.path_prefix, self._serve)]

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
        for name in provider.refused_headers:
            if name in request.headers:
                message = (
                    f"The gateway does not accept the {name} header: every call uses the team's"
                    f" {provider.name} account; send only your virtual key."
                )
                return self._refuse(provider, 400, message, "credential_header")
        if self.body_limit.declared_too_large(request):
            return self._too_large(provider)
        body: bytes | None = None
        method = request.method
        estimable = method == "POST" and billable(shape, path)
        names_tool = reads_body(shape, method, path) and (request.content_length or 0) <= MAX_BODY
        if estimable or names_tool:  # to estimate the input from, or to find the tool it executes
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
        outgoing = self.forwarder.build(
            request, provider.upstream, path=target, forwarded=False, drop=provider.stripped_headers
        )
        swap_headers(outgoing.headers, presented, provider.real_key)
        _offer_readable_encodings(outgoing)
        rewrite = None
        if provider.rewrites_urls:
            outgoing.headers["Accept-Encoding"] = "identity"  # rewritten bodies must be readable
            rewrite = self._rewrite(request, provider)
        strip = False
        if body is not None:
            outgoing.body = body
            if shape == "openai" and path.endswith("/chat/completions"):
                outgoing.body, strip = _with_usage_requested(body)
            if strip:  # the extra chunk can only be cut out of a stream the gateway can read
                outgoing.headers["Accept-Encoding"] = "identity"
        tap = UsageTap(shape, strip_usage=strip, responses_api=path.endswith("/responses"), rewrite=rewrite)
        call = _Call(
            path,
            operation(method, path),
            tool_of(shape, method, path, body),
            body if estimable else None,
            started,
        )
        overhead = time.perf_counter() - started
        tap.extra_headers["x-gateway-overhead-ms"] = f"{overhead * 1000:.3f}"
        self.m_overhead.observe(overhead)
        self.activity.record(record.user_id)
        response: web.StreamResponse | None = None
        try:
            response = await self.forwarder.send(
                request,
                outgoing,
                stage=self.name,
                timeouts=self.timeouts,
                tap=tap,
                on_error=self._renderers[shape],
            )
            return response
        finally:
            self._account(record, provider, call, tap, _outcome(tap, response))

    def _rewrite(self, request: web.Request, provider: Provider) -> UrlRewrite:
        """The provider's API base → this gateway's, at the origin the client reached it by (so an
        SDK that only sends its key to its own API origin, like Composio's, accepts the URLs)."""
        client = self.forwarder.client(request)
        path = f"{self.config.path_prefix}/{provider.name}"
        upstream = provider.upstream
        return UrlRewrite(
            f"{upstream.origin.scheme}://{upstream.origin.netloc}{upstream.prefix}",
            f"{client.proto}://{client.host}{path}",
            path,
        )

    def _account(
        self, record: KeyRecord, provider: Provider, call: _Call, tap: UsageTap, status: int
    ) -> None:
        """Record the request's usage row; runs even when the client left mid-stream. A billable call
        whose final count never came (aborted, cut off, or an answer without usage) is recorded and
        charged at an estimate."""
        tap.salvage()
        report = tap.report
        usage = report.result()
        path = call.path
        if not usage.model and "/models/" in path:  # Gemini names the model in the path
            usage = usage._replace(model=path.rsplit("/models/", 1)[1].split(":", 1)[0])
        consumed = 200 <= tap.status < 300 or (tap.status == 0 and status == 499)  # not refused
        if call.estimable_body is not None and not report.final and consumed:
            usage = completed(usage, report.text_bytes, call.estimable_body)
            self.m_estimated.inc((provider.name,))
        cost = self.prices.cost(usage)
        self.m_requests.inc((provider.name, str(status)))
        if usage.reported or usage.estimated:
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
            estimated=usage.estimated,
            cost_usd=cost,
            status=status,
            latency_ms=round((time.perf_counter() - call.started) * 1000),
            created_at=datetime.now(UTC),
            operation=call.operation,
            tool=call.tool,
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


@dataclass(frozen=True, slots=True)
class _Call:
    """What the usage row needs to know of the request."""

    path: str
    operation: str
    tool: str | None
    estimable_body: bytes | None  # a billable call's request, to estimate its input from
    started: float


def _outcome(tap: UsageTap, response: web.StreamResponse | None) -> int:
    """The status to record: the provider's, 502/504 when its stream broke off, 499 when the client
    left before the answer ended."""
    if tap.failed:
        return FAILURE_STATUS.get(tap.failed, 502)
    if response is None or (tap.status and not tap.ended):
        return 499
    return tap.status or response.status


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
    if b'"stream"' not in body and b"\\u" not in body:  # no "stream" key, not even an escaped one
        return body, False
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
