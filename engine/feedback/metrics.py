"""Prometheus metrics (``/metrics`` on the tracking endpoint).

Counters live in the process (Prometheus expects them to restart from zero with it):
messages by account and outcome as this engine confirms them, feedback events by kind and
origin, tracking requests by endpoint and outcome. Gauges are read from the store when
scraped, so every engine node reports the same, cluster-wide state: queue depth and
messages in flight per account, the guard's state, campaigns by status, what the bounce
mailboxes could not read, errors by reason per account, accounts paused by their circuit
breaker, and the engines running.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from engine.store import Store

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _StoreCollector(Collector):
    """Gauges computed from the store at scrape time (a few grouped queries, no scans)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def describe(self) -> Iterator[Metric]:
        """Nothing: without it the registry would collect (query the store) at registration,
        in every engine process at start, sender workers included (issue 16)."""
        return iter(())

    def collect(self) -> Iterator[Metric]:
        snapshot = self.store.feedback.gauges()
        queue = GaugeMetricFamily(
            "disparo_queue_depth",
            "Messages waiting to be sent (pending, in flight or waiting for a retry)",
            labels=["account"],
        )
        flight = GaugeMetricFamily(
            "disparo_in_flight",
            "Messages claimed by an engine and not confirmed",
            labels=["account"],
        )
        paused = GaugeMetricFamily(
            "disparo_guard_paused", "1 when the guard paused the account (D15)", labels=["account"]
        )
        bounce = GaugeMetricFamily(
            "disparo_bounce_rate",
            "Hard bounces / sent over 24 h at the guard's last check (D14)",
            labels=["account"],
        )
        complaint = GaugeMetricFamily(
            "disparo_complaint_rate",
            "Complaints / sent over 24 h at the guard's last check (D14)",
            labels=["account"],
        )
        for account, state in sorted(snapshot.accounts.items()):
            queue.add_metric([account], state.queued)
            flight.add_metric([account], state.in_flight)
            paused.add_metric([account], 1.0 if state.paused else 0.0)
            # Prometheus ratios (0–1): the guard's percentages over 100
            bounce.add_metric([account], state.rates.bounce_rate / 100)
            complaint.add_metric([account], state.rates.complaint_rate / 100)
        campaigns = GaugeMetricFamily("disparo_campaigns", "Campaigns by status", labels=["status"])
        for status, n in sorted(snapshot.campaigns.items()):
            campaigns.add_metric([status], n)
        unparsed = GaugeMetricFamily(
            "disparo_mailbox_unparsed",
            "Messages a bounce mailbox kept because they could not be read",
            labels=["mailbox"],
        )
        handled = GaugeMetricFamily(
            "disparo_mailbox_handled", "Reports a bounce mailbox handled", labels=["mailbox"]
        )
        for name, (done, kept) in sorted(snapshot.mailboxes.items()):
            handled.add_metric([name], done)
            unparsed.add_metric([name], kept)
        yield from (queue, flight, paused, bounce, complaint, campaigns, handled, unparsed)
        yield from self._operations()

    def _operations(self) -> Iterator[Metric]:
        """Errors by reason per account, paused channels, running engines, the database."""
        errors = GaugeMetricFamily(
            "disparo_delivery_errors",
            "Failed attempts by account, outcome (retry, failed, bounced), scope (account: the "
            "channel failed; delivery: the recipient's) and reason; the 20 most frequent "
            "reasons of each account",
            labels=["account", "outcome", "scope", "reason"],
        )
        for account, found in sorted(self.store.errors.for_accounts(limit=20).items()):
            for e in found:
                errors.add_metric([account, e.outcome, e.scope, e.reason[:120]], e.count)
        breaker = GaugeMetricFamily(
            "disparo_channel_failing",
            "1 when the account's circuit breaker paused it (its channel fails)",
            labels=["account"],
        )
        for name, state in sorted(self.store.accounts.states().items()):
            breaker.add_metric([name], 1.0 if state.breaker_open else 0.0)
        now = self.store.clock.now()
        engines = GaugeMetricFamily(
            "disparo_engines_running", "Engine processes with a fresh heartbeat on this store"
        )
        engines.add_metric([], sum(1 for e in self.store.engines.listing() if e.alive(now)))
        outage = GaugeMetricFamily(
            "disparo_database_unavailable",
            "1 while this process's database calls fail with transient errors",
        )
        outage.add_metric([], 1.0 if self.store.outage is not None else 0.0)
        yield from (errors, breaker, engines, outage)


class Metrics:
    """The engine's metrics registry (one per engine process)."""

    def __init__(self, store: Store | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.messages = Counter(
            "disparo_messages",
            "Messages by sender account and outcome, as this engine confirmed them",
            ["account", "channel", "outcome"],
            registry=self.registry,
        )
        self.feedback = Counter(
            "disparo_feedback_events",
            "Events that came back (open, click, bounce, complaint, unsubscribe, reply…)",
            ["kind", "origin"],
            registry=self.registry,
        )
        self.requests = Counter(
            "disparo_tracking_requests",
            "Requests to the tracking endpoint by route and outcome",
            ["route", "outcome"],
            registry=self.registry,
        )
        if store is not None:
            self.registry.register(_StoreCollector(store))

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)
