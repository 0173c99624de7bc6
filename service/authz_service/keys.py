"""Typed application keys: everything the handlers use hangs on the app."""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web
from psycopg_pool import AsyncConnectionPool

from authz_service.auth import Verifier
from authz_service.authorizations import Authorizations
from authz_service.cache import CheckCache
from authz_service.clients import Referral, Statistics
from authz_service.config import Config
from authz_service.deadline import Reaper
from authz_service.events import Relay
from authz_service.metrics import Metrics
from authz_service.openapi import OpenApi
from authz_service.redis_client import RedisClient
from authz_service.store import Store

CONFIG = web.AppKey("config", Config)
METRICS = web.AppKey("metrics", Metrics)
OPENAPI = web.AppKey("openapi", OpenApi)
POOL = web.AppKey("pool", AsyncConnectionPool)
STORE = web.AppKey("store", Store)
REDIS = web.AppKey("redis", RedisClient)
CACHE = web.AppKey("cache", CheckCache)
HTTP = web.AppKey("http", aiohttp.ClientSession)
REFERRAL = web.AppKey("referral", Referral)
STATISTICS = web.AppKey("statistics", Statistics)
RELAY = web.AppKey("relay", Relay)
AUTHORIZATIONS = web.AppKey("authorizations", Authorizations)
VERIFIER = web.AppKey("verifier", Verifier)
# Set on SIGTERM: readiness answers 503 while the service serves on (config.shutdown_grace).
DRAINING = web.AppKey("draining", asyncio.Event)
# Cancels requests past REQUEST_TIMEOUT_MS (middleware.handle).
DEADLINES = web.AppKey("deadlines", Reaper)
