"""Consumer of `identity-events` (group KAFKA_CONSUMER_GROUP).

`user.deactivated` revokes every non-revoked authorization of that user. The event id is
recorded in `processed_events` in the same transaction as the revocations, and offsets are
committed only after that transaction, so a redelivered event takes effect exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaError

from authz_service.config import KafkaConfig

log = logging.getLogger(__name__)
USER_DEACTIVATED = "user.deactivated"

Handler = Callable[[str, str, str], Awaitable[None]]  # (event id, type, user id)


def parse_identity_event(raw: bytes | None) -> tuple[str, str, str] | None:
    """(eventId, type, userId) or None for a message we cannot use.

    Accepts the user id at the top level or under `payload`/`data`/`user`."""
    if not raw:
        return None
    try:
        event = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(event, dict):
        return None
    event_id, event_type = event.get("eventId"), event.get("type")
    user_id: Any = event.get("userId")
    for nested in ("payload", "data", "user"):
        inner = event.get(nested)
        if user_id is None and isinstance(inner, Mapping):
            user_id = inner.get("userId") or inner.get("id")
    if (isinstance(event_id, str) and event_id and isinstance(event_type, str) and event_type
            and isinstance(user_id, str) and user_id):
        return event_id, event_type, user_id
    return None


def consumer_config(config: KafkaConfig) -> dict[str, Any]:
    return {
        "bootstrap.servers": ",".join(config.brokers),
        "client.id": config.client_id,
        "group.id": config.consumer_group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 10000,
        "log_level": 3,
        "logger": logging.getLogger("authz_service.kafka"),
    }


class IdentityConsumer:
    def __init__(self, config: KafkaConfig, handler: Handler) -> None:
        self.config = config
        self.handler = handler
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        """Consume until stopped; a broken consumer is closed and replaced after a pause."""
        while not self._stopping.is_set():
            try:
                await self._consume()
            except Exception:
                if self._stopping.is_set():
                    return
                log.exception("identity consumer failed; restarting it")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), timeout=2.0)

    async def _consume(self) -> None:
        consumer = Consumer(consumer_config(self.config))
        consumer.subscribe([self.config.identity_topic])
        try:
            while not self._stopping.is_set():
                msg = await asyncio.to_thread(consumer.poll, 0.5)
                if msg is None:
                    continue
                if msg.error():
                    if msg.error().code() != KafkaError._PARTITION_EOF:
                        log.warning("identity-events: %s", msg.error(),
                                    extra={"dependency": "kafka"})
                    continue
                await self._handle(msg.value())
                await asyncio.to_thread(consumer.commit, message=msg, asynchronous=False)
        finally:
            await asyncio.to_thread(consumer.close)

    async def _handle(self, raw: bytes | None) -> None:
        parsed = parse_identity_event(raw)
        if parsed is None:
            log.warning("skipping malformed identity event", extra={"topic":
                        self.config.identity_topic})
            return
        delay = 0.2
        while True:  # a database outage must not skip an event: retry until it lands
            try:
                await self.handler(*parsed)
                return
            except Exception:
                if self._stopping.is_set():
                    raise
                log.exception("handling identity event failed; retrying",
                              extra={"eventId": parsed[0]})
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), timeout=delay)
                delay = min(delay * 2, 5.0)

    def stop(self) -> None:
        self._stopping.set()
