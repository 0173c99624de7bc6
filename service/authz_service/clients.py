"""HTTP clients for the referral and statistics services: signed calls, per-attempt
timeouts, bounded retries with backoff, and a DependencyUnavailable naming the service."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import aiohttp

from authz_service import auth
from authz_service.config import JwtConfig, ServicesConfig
from authz_service.errors import DependencyUnavailable

log = logging.getLogger(__name__)
SERVICE_SUBJECT = "authorization-service"


class _Retryable(Exception):
    pass


class ServiceClient:
    def __init__(self, session: aiohttp.ClientSession, name: str, base_url: str,
                 jwt_config: JwtConfig, timeout: float, attempts: int) -> None:
        self.session = session
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.jwt_config = jwt_config
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.attempts = max(1, attempts)

    async def get_json(self, path: str, params: Mapping[str, str] | None = None
                       ) -> dict[str, Any]:
        last = ""
        for attempt in range(self.attempts):
            if attempt:
                await asyncio.sleep(0.05 * 2**attempt)  # backoff between bounded retries
            try:
                return await self._once(path, params)
            except _Retryable as exc:
                last = str(exc)
            except (aiohttp.ClientError, TimeoutError) as exc:
                last = type(exc).__name__ + (f": {exc}" if str(exc) else "")
            log.warning("%s call failed (attempt %d/%d): %s", self.name, attempt + 1,
                        self.attempts, last, extra={"dependency": self.name})
        raise DependencyUnavailable(self.name, last)

    async def _once(self, path: str, params: Mapping[str, str] | None) -> dict[str, Any]:
        token = auth.sign(self.jwt_config, SERVICE_SUBJECT, ["service"])
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        async with self.session.get(self.base_url + path, params=params, headers=headers,
                                    timeout=self.timeout) as resp:
            if resp.status >= 500 or resp.status == 429:
                raise _Retryable(f"HTTP {resp.status}")
            if resp.status >= 400:
                # Not a transient fault: retrying will not help, the dependency refused us.
                raise DependencyUnavailable(self.name, f"HTTP {resp.status}")
            try:
                body = await resp.json(content_type=None)
            except ValueError:
                raise _Retryable("response is not JSON") from None
        if not isinstance(body, dict):
            raise _Retryable("response is not a JSON object")
        return body


def _count(body: Mapping[str, Any], key: str, name: str) -> int:
    value = body.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise DependencyUnavailable(name, f"malformed response: {key} is not a count")
    return value


class Referral:
    def __init__(self, client: ServiceClient) -> None:
        self.client = client

    async def team_size(self, user_id: str) -> int:
        body = await self.client.get_json(f"/api/v1/referrals/{quote(user_id, safe='')}/team")
        return _count(body, "teamSize", self.client.name)


class Statistics:
    def __init__(self, client: ServiceClient) -> None:
        self.client = client

    async def team_planting_count(self, user_id: str, region_code: str) -> int:
        body = await self.client.get_json(
            "/api/v1/statistics/team-planting",
            {"userId": user_id, "regionCode": region_code})
        return _count(body, "plantingCount", self.client.name)


def create_clients(session: aiohttp.ClientSession, services: ServicesConfig,
                   jwt_config: JwtConfig) -> tuple[Referral, Statistics]:
    def make(name: str, url: str) -> ServiceClient:
        return ServiceClient(session, name, url, jwt_config, services.timeout,
                             services.attempts)

    return (Referral(make("referral", services.referral_url)),
            Statistics(make("statistics", services.statistics_url)))
