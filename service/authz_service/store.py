"""PostgreSQL persistence (psycopg 3 async pool). Every state change writes its outbox
event in the same transaction; the database's unique indexes enforce the region and user
rules under concurrency, and their violations become 409s here."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.errors import UniqueViolation
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from authz_service import domain
from authz_service.config import DatabaseConfig
from authz_service.deadline import detach
from authz_service.domain import Authorization, RoleType, Status
from authz_service.errors import Conflict, NotFound

COLUMNS = ("id, user_id, role_type, region_code, status, created_at, updated_at, "
           "activated_at, revoked_at, revoke_reason")

_CONSTRAINT_MESSAGES = {
    "authorizations_one_open_per_user_role":
        "user {user_id} already holds a non-revoked {role_type} authorization",
    "authorizations_one_active_company_per_region":
        "region {region_code} already has an ACTIVE {role_type}",
}


# While the server is unreachable the pool retries a connection 1 s, then 2 s, 4 s... apart;
# giving up after 5 s (and starting afresh at the next request) keeps that wait short, so
# the first requests after the database is back find it.
RECONNECT_TIMEOUT = 5.0


def connection_kwargs(config: DatabaseConfig) -> dict[str, Any]:
    """libpq parameters on top of the URL's: the statement timeout (added to any `options`
    the URL has), a connect timeout unless the URL sets one, and TCP keepalives so a
    connection to a vanished host is noticed. A hung server (stopped process, kernel still
    answering TCP) is noticed by none of these: the request deadline covers that."""
    given = conninfo_to_dict(config.conninfo)
    options = f"-c statement_timeout={config.statement_timeout_ms}"
    kwargs: dict[str, Any] = {
        "options": f"{given['options']} {options}" if given.get("options") else options,
        "keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5,
        "keepalives_count": 3, "tcp_user_timeout": 15_000,
    }
    if "connect_timeout" not in given:
        kwargs["connect_timeout"] = config.connect_timeout
    return kwargs


def create_pool(config: DatabaseConfig) -> AsyncConnectionPool:
    return AsyncConnectionPool(
        config.conninfo, min_size=1, max_size=config.pool_max, timeout=config.pool_timeout,
        open=False, kwargs=connection_kwargs(config), name="authz",
        reconnect_timeout=RECONNECT_TIMEOUT,
    )


def now() -> datetime:
    return datetime.now(UTC)


def _row(row: Sequence[Any]) -> Authorization:
    return Authorization(
        id=str(row[0]), user_id=row[1], role_type=RoleType(row[2]), region_code=row[3],
        status=Status(row[4]), created_at=row[5], updated_at=row[6], activated_at=row[7],
        revoked_at=row[8], revoke_reason=row[9],
    )


@dataclass(frozen=True)
class Filters:
    user_id: str | None = None
    role_type: RoleType | None = None
    region_code: str | None = None
    status: Status | None = None


async def insert_event(conn: psycopg.AsyncConnection[Any], event_type: str,
                       auth: Authorization, occurred_at: datetime) -> None:
    event_id = str(uuid.uuid4())
    payload = domain.event(event_id, event_type, occurred_at, auth)
    await conn.execute(
        "INSERT INTO outbox (event_id, aggregate_id, event_type, payload) "
        "VALUES (%s, %s, %s, %s)",
        (event_id, auth.id, event_type, Jsonb(payload)),
    )


def _conflict(exc: UniqueViolation, auth: Authorization) -> Conflict:
    name = exc.diag.constraint_name or ""
    template = _CONSTRAINT_MESSAGES.get(name, "conflicts with an existing authorization")
    return Conflict(template.format(user_id=auth.user_id, role_type=auth.role_type.value,
                                    region_code=auth.region_code))


class Store:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    @detach
    async def create(self, user_id: str, role_type: RoleType, region_code: str
                     ) -> Authorization:
        domain.validate_region(role_type, region_code)
        stamp = now()
        auth = Authorization(id=str(uuid.uuid4()), user_id=user_id, role_type=role_type,
                             region_code=region_code, status=Status.PENDING,
                             created_at=stamp, updated_at=stamp)
        try:
            async with self.pool.connection() as conn, conn.transaction():
                await conn.execute(
                    f"INSERT INTO authorizations ({COLUMNS}) "  # noqa: S608 - fixed columns
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    (auth.id, auth.user_id, auth.role_type.value, auth.region_code,
                     auth.status.value, auth.created_at, auth.updated_at, None, None, None),
                )
                await insert_event(conn, domain.EVENT_CREATED, auth, stamp)
        except UniqueViolation as exc:
            raise _conflict(exc, auth) from None
        return auth

    @detach
    async def get(self, auth_id: str) -> Authorization:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT {COLUMNS} FROM authorizations WHERE id = %s",  # noqa: S608
                (auth_id,),
            )
            row = await cur.fetchone()
        if row is None:
            raise NotFound(f"authorization {auth_id} not found")
        return _row(row)

    @detach
    async def page(self, filters: Filters, limit: int, cursor: str | None
                   ) -> tuple[list[Authorization], str | None]:
        clauses: list[sql.Composable] = []
        params: list[Any] = []
        for column, value in (("user_id", filters.user_id), ("role_type", filters.role_type),
                              ("region_code", filters.region_code),
                              ("status", filters.status)):
            if value is not None:
                clauses.append(sql.SQL("{} = %s").format(sql.Identifier(column)))
                params.append(str(value))
        if cursor:
            stamp, ident = domain.decode_cursor(cursor)
            clauses.append(sql.SQL("(created_at, id) > (%s, %s)"))
            params.extend([stamp, ident])
        where = sql.SQL(" AND ").join(clauses) if clauses else sql.SQL("TRUE")
        query = sql.SQL(
            "SELECT {} FROM authorizations WHERE {} ORDER BY created_at, id LIMIT %s"
        ).format(sql.SQL(COLUMNS), where)
        params.append(limit + 1)
        async with self.pool.connection() as conn:
            cur = await conn.execute(query, params)
            rows = await cur.fetchall()
        items = [_row(r) for r in rows[:limit]]
        next_cursor = domain.encode_cursor(items[-1]) if len(rows) > limit else None
        return items, next_cursor

    @detach
    async def transition(self, auth_id: str,
                         change: Callable[[Authorization, datetime], Authorization],
                         event_type: str,
                         before_write: Callable[[Authorization], Awaitable[None]] | None = None,
                         ) -> Authorization:
        """Lock the row, apply a pure domain transition, write it and its event.

        `before_write` runs once the transition is known to be allowed, before anything is
        written; if it raises, the transaction rolls back and nothing changes."""
        stamp = now()
        try:
            async with self.pool.connection() as conn, conn.transaction():
                cur = await conn.execute(
                    f"SELECT {COLUMNS} FROM authorizations WHERE id = %s FOR UPDATE",  # noqa: S608
                    (auth_id,),
                )
                row = await cur.fetchone()
                if row is None:
                    raise NotFound(f"authorization {auth_id} not found")
                current = _row(row)
                updated = change(current, stamp)
                if before_write is not None:
                    await before_write(updated)
                await self._write(conn, updated)
                await insert_event(conn, event_type, updated, stamp)
        except UniqueViolation as exc:
            raise _conflict(exc, current) from None
        return updated

    async def _write(self, conn: psycopg.AsyncConnection[Any], auth: Authorization) -> None:
        await conn.execute(
            "UPDATE authorizations SET status = %s, updated_at = %s, activated_at = %s, "
            "revoked_at = %s, revoke_reason = %s WHERE id = %s",
            (auth.status.value, auth.updated_at, auth.activated_at, auth.revoked_at,
             auth.revoke_reason, auth.id),
        )

    @detach
    async def active_ids(self, keys: Sequence[tuple[str, str, str]]) -> list[str | None]:
        """For each (user, role type, region): the id of its ACTIVE grant, or None. One
        query for all (the checks of one event-loop turn that missed the cache)."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT DISTINCT ON (k.n) k.n, a.id FROM unnest(%s::text[], %s::text[], "
                "%s::text[]) WITH ORDINALITY AS k(user_id, role_type, region_code, n) "
                "LEFT JOIN authorizations a ON a.user_id = k.user_id "
                "AND a.role_type = k.role_type AND a.region_code = k.region_code "
                "AND a.status = 'ACTIVE' ORDER BY k.n",
                ([k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys]),
            )
            rows = await cur.fetchall()
        return [None if ident is None else str(ident) for _, ident in rows]

    @detach
    async def revoke_user(self, user_id: str, event_id: str, event_type: str, reason: str
                          ) -> list[Authorization] | None:
        """Revoke every non-revoked grant of a user, once per consumed event id.

        Returns None when the event was already processed (a redelivery)."""
        stamp = now()
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "INSERT INTO processed_events (event_id, event_type) VALUES (%s, %s) "
                "ON CONFLICT (event_id) DO NOTHING",
                (event_id, event_type),
            )
            if cur.rowcount == 0:
                return None
            cur = await conn.execute(
                f"SELECT {COLUMNS} FROM authorizations WHERE user_id = %s "  # noqa: S608
                "AND status <> 'REVOKED' ORDER BY created_at, id FOR UPDATE",
                (user_id,),
            )
            revoked = [domain.revoke(_row(r), reason, stamp) for r in await cur.fetchall()]
            for auth in revoked:
                await self._write(conn, auth)
                await insert_event(conn, domain.EVENT_REVOKED, auth, stamp)
        return revoked

    @detach
    async def ping(self) -> None:
        async with self.pool.connection(timeout=min(2.0, self.pool.timeout)) as conn:
            await conn.execute("SELECT 1")
