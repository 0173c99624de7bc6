"""The use cases on authorizations, written once for the API handlers and the consumer.

Each change follows the same order: fence the user's cached check answers, change the
store (row and outbox event in one transaction), lift the fence, wake the relay, count the
metric and log. Callers check permissions and parse input; nothing here knows HTTP.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from authz_service import domain, logs
from authz_service.batch import Batch
from authz_service.cache import CheckCache
from authz_service.domain import Authorization, RoleType
from authz_service.events import Relay
from authz_service.metrics import Metrics
from authz_service.store import Store

log = logging.getLogger(__name__)


class Authorizations:
    def __init__(self, store: Store, cache: CheckCache, relay: Relay, metrics: Metrics) -> None:
        self.store = store
        self.cache = cache
        self.relay = relay
        self.metrics = metrics
        self._active: Batch[tuple[str, str, str], str | None] = Batch(store.active_ids)

    async def create(self, user_id: str, role_type: RoleType, region_code: str
                     ) -> Authorization:
        created = await self.store.create(user_id, role_type, region_code)
        # A PENDING grant answers no check, so the cache keeps its generation.
        self._changed(domain.EVENT_CREATED, created)
        return created

    async def activate(self, auth_id: str) -> Authorization:
        changed = await self._fenced(auth_id, domain.activate, domain.EVENT_ACTIVATED)
        self._changed(domain.EVENT_ACTIVATED, changed)
        return changed

    async def revoke(self, auth_id: str, reason: str) -> Authorization:
        changed = await self._fenced(
            auth_id, lambda a, now: domain.revoke(a, reason, now), domain.EVENT_REVOKED)
        self._changed(domain.EVENT_REVOKED, changed)
        return changed

    async def _fenced(self, auth_id: str,
                      change: Callable[[Authorization, datetime], Authorization],
                      event_type: str) -> Authorization:
        """A transition inside the check cache's fence (cache.py): no Redis, no change."""
        fenced: list[str] = []

        async def fence(updated: Authorization) -> None:
            await self.cache.begin_change(updated.user_id)
            fenced.append(updated.user_id)

        try:
            return await self.store.transition(auth_id, change, event_type, fence)
        finally:
            for user_id in fenced:
                await self.cache.end_change(user_id)

    async def revoke_user(self, user_id: str, event_id: str, event_type: str, reason: str
                          ) -> list[Authorization] | None:
        """Revoke every non-revoked grant of a user once per event id (None: a redelivery).
        Without Redis this raises and the consumer retries the event until it lands."""
        await self.cache.begin_change(user_id)
        try:
            revoked = await self.store.revoke_user(user_id, event_id, event_type, reason)
        finally:
            await self.cache.end_change(user_id)
        if revoked is None:
            return None
        self.relay.notify()
        for auth in revoked:
            self.metrics.authorizations.labels(domain.EVENT_REVOKED, auth.role_type.value).inc()
        log.info("revoked %d authorizations of a deactivated user", len(revoked),
                 extra={"userId": user_id, "eventId": event_id, "count": len(revoked)})
        return revoked

    async def check(self, user_id: str, role_type: str, region_code: str) -> dict[str, Any]:
        """{allowed, authorizationId}: from the cache under the user's generation, else the
        database (then cached under the generation read before the database was)."""
        cached, stamp = await self.cache.get(user_id, role_type, region_code)
        if cached is not None:
            answer, source = cached, "cache"
        else:
            found = await self._active.add((user_id, role_type, region_code))
            answer = {"allowed": found is not None, "authorizationId": found}
            source = "database"
            if stamp is not None:
                await self.cache.put(user_id, stamp, role_type, region_code, answer)
        self.metrics.check(answer["allowed"] is True, source)
        return answer

    def _changed(self, event: str, changed: Authorization) -> None:
        self.metrics.authorizations.labels(event, changed.role_type.value).inc()
        self.relay.notify()
        logs.bind(authorizationId=changed.id, roleType=changed.role_type.value)
        log.info("Authorization %s", event.rsplit(".", 1)[-1], extra={"event": event})
