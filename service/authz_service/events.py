"""The outbox relay: publishes pending outbox rows to Kafka, then stamps them published.

Rows are claimed with `FOR UPDATE SKIP LOCKED` (replicas share the work), produced with an
idempotent producer keyed by authorization id, and marked published only after the broker
acknowledged them. While Kafka is down the rows simply stay pending; nothing is lost.
`message.timeout.ms` bounds every attempt, so no message is left in flight when a batch ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Sequence
from typing import Any

from confluent_kafka import KafkaError, Producer
from psycopg_pool import AsyncConnectionPool

from authz_service.config import KafkaConfig
from authz_service.metrics import Metrics

log = logging.getLogger(__name__)
BATCH = 100
RETENTION_DAYS = 7
PRUNE_EVERY = 1000  # relay passes between deletions of old published rows


def producer_config(config: KafkaConfig) -> dict[str, Any]:
    return {
        "bootstrap.servers": ",".join(config.brokers),
        "client.id": config.client_id,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "message.timeout.ms": config.delivery_timeout_ms,
        "socket.connection.setup.timeout.ms": min(config.delivery_timeout_ms, 5000),
        "reconnect.backoff.max.ms": 1000,
        "log_level": 3,
        "logger": logging.getLogger("authz_service.kafka"),  # librdkafka logs as JSON lines
    }


class Relay:
    def __init__(self, pool: AsyncConnectionPool, config: KafkaConfig, metrics: Metrics,
                 interval: float = 0.5) -> None:
        self.pool = pool
        self.config = config
        self.metrics = metrics
        self.interval = interval
        self.wake = asyncio.Event()
        self._stopping = False
        self._fatal = False
        self._producer = self._new_producer()

    def _new_producer(self) -> Any:
        def on_error(err: Any) -> None:
            if err.fatal():
                self._fatal = True
            log.warning("kafka producer: %s", err, extra={"dependency": "kafka"})

        return Producer({**producer_config(self.config), "error_cb": on_error})

    def notify(self) -> None:
        """A change committed: publish soon instead of at the next poll."""
        self.wake.set()

    async def prune(self, days: int = RETENTION_DAYS) -> int:
        """Delete published rows older than `days`; pending rows are never deleted."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "DELETE FROM outbox WHERE published_at < now() - make_interval(days => %s)",
                (days,))
            return cur.rowcount

    async def run(self) -> None:
        backoff = self.interval
        passes = 0
        while not self._stopping:
            passes += 1
            if passes % PRUNE_EVERY == 1:
                try:
                    await self.prune()
                except Exception:
                    log.exception("outbox prune failed")
            try:
                published, failed = await self.publish_batch()
            except Exception:
                log.exception("outbox relay batch failed")
                published, failed = 0, 1
            if published and not failed:
                backoff = self.interval
                continue
            if failed:
                backoff = min(backoff * 2, 5.0)
            await self._sleep(backoff if failed else self.interval)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), timeout=seconds)
        self.wake.clear()

    async def publish_batch(self) -> tuple[int, int]:
        """One pass: (published, failed) counts."""
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "SELECT id, aggregate_id, payload FROM outbox WHERE published_at IS NULL "
                "ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED",
                (BATCH,),
            )
            rows = await cur.fetchall()
            if not rows:
                self.metrics.outbox_pending.set(0)
                return 0, 0
            delivered = await asyncio.to_thread(self._produce, rows)
            if delivered:
                await conn.execute(
                    "UPDATE outbox SET published_at = now() WHERE id = ANY(%s)", (delivered,)
                )
            pending = await (await conn.execute(
                "SELECT count(*) FROM outbox WHERE published_at IS NULL")).fetchone()
        failed = len(rows) - len(delivered)
        self.metrics.outbox_published.inc(len(delivered))
        self.metrics.outbox_failures.inc(failed)
        self.metrics.outbox_pending.set(pending[0] if pending else 0)
        if delivered:
            log.info("published %d outbox events", len(delivered),
                     extra={"count": len(delivered), "topic": self.config.events_topic})
        if failed:
            log.warning("%d outbox events wait for Kafka", failed,
                        extra={"count": failed, "dependency": "kafka"})
        if self._fatal:
            self._producer = self._new_producer()
            self._fatal = False
        return len(delivered), failed

    def _produce(self, rows: Sequence[tuple[Any, ...]]) -> list[int]:
        """Blocking: produce and wait until each message is acknowledged or timed out."""
        outcome: dict[int, KafkaError | None] = {}

        def report(row_id: int) -> Any:
            def callback(err: KafkaError | None, _msg: Any) -> None:
                outcome[row_id] = err
                if err is not None and err.fatal():
                    self._fatal = True
            return callback

        for row_id, aggregate_id, payload in rows:
            try:
                self._producer.produce(
                    self.config.events_topic, key=str(aggregate_id).encode(),
                    value=json.dumps(payload, separators=(",", ":")).encode(),
                    on_delivery=report(row_id),
                )
            except BufferError:
                break
            except Exception as exc:  # a fatal producer is replaced after this batch
                log.warning("kafka produce failed: %s", exc, extra={"dependency": "kafka"})
                self._fatal = True
                break
        self._producer.flush(self.config.delivery_timeout_ms / 1000 + 5)
        return [row_id for row_id, err in outcome.items() if err is None]

    async def stop(self) -> None:
        self._stopping = True
        self.wake.set()

    async def drain(self, deadline: float) -> None:
        """On shutdown: publish what is pending while Kafka answers and time remains."""
        loop = asyncio.get_running_loop()
        end = loop.time() + deadline
        while loop.time() < end:
            published, failed = await self.publish_batch()
            if failed or not published:
                break
        await asyncio.to_thread(self._producer.flush, 1.0)

    def close(self) -> None:
        """Drop the producer so librdkafka stops reconnecting once the app is gone."""
        self._producer = None
