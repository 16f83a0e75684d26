"""Prometheus metrics, one registry per app (no process-global state).

Labels are bounded: endpoint, public model, engine, the key's team, and status or error code.
Requests rejected before authentication carry ``team=""``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["CONTENT_TYPE", "Metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_LABELS = ("endpoint", "model", "engine", "team")


class Metrics:
    """Holds every metric Socle exports; the gateway owns one instance."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "socle_requests", "Requests served, by outcome.", [*_LABELS, "status"], registry=r
        )
        self.latency = Histogram(
            "socle_request_duration_seconds",
            "Time from request to last byte.",
            _LABELS,
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "socle_time_to_first_token_seconds",
            "Time from request to the first generated token (streams).",
            _LABELS,
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.tokens = Counter("socle_tokens", "Tokens processed.", [*_LABELS, "direction"], registry=r)
        self.errors = Counter(
            "socle_errors", "Requests that ended in an error.", [*_LABELS, "code"], registry=r
        )
        self.engine_in_flight = Gauge(
            "socle_engine_in_flight", "Requests in flight per engine.", ["engine"], registry=r
        )
        self.engine_healthy = Gauge(
            "socle_engine_healthy", "1 if the engine is healthy.", ["engine"], registry=r
        )
        self.feedback = Counter(
            "socle_feedback",
            "Users' ratings of answers (up or down), new or changed, by model.",
            ["model", "rating"],
            registry=r,
        )
        self.usage_dropped = Gauge(
            "socle_usage_records_dropped", "Usage records that could not be written.", registry=r
        )

    def observe(
        self,
        *,
        endpoint: str,
        model: str,
        engine: str,
        team: str,
        status: int,
        seconds: float,
        ttft: float | None = None,
        tokens_in: int = 0,
        tokens_out: int = 0,
        error_code: str | None = None,
    ) -> None:
        """Record one finished request."""
        labels = (endpoint, model, engine, team)
        self.requests.labels(*labels, str(status)).inc()
        self.latency.labels(*labels).observe(seconds)
        if ttft is not None:
            self.ttft.labels(*labels).observe(ttft)
        if tokens_in:
            self.tokens.labels(*labels, "in").inc(tokens_in)
        if tokens_out:
            self.tokens.labels(*labels, "out").inc(tokens_out)
        if error_code is not None:
            self.errors.labels(*labels, error_code).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
