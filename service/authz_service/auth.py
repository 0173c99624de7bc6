"""Bearer JWT verification (HS256, rotation via a previous secret) and service tokens."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence

import jwt

from authz_service.config import JwtConfig
from authz_service.domain import Principal
from authz_service.errors import Unauthorized

LEEWAY_SECONDS = 5
VERIFIED_TOKENS = 10_000  # callers reuse a token for its lifetime; verify it once


def bearer_token(header: str | None) -> str:
    if not header:
        raise Unauthorized("missing bearer token")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Authorization header must be 'Bearer <token>'")
    return token.strip()


def _secrets(config: JwtConfig) -> Sequence[str]:
    return [config.secret] + ([config.previous_secret] if config.previous_secret else [])


class Verifier:
    """`verify` with a bounded memory of the tokens it accepted, each until its `exp`
    (plus the leeway) passes: a repeated token costs a dict lookup, not an HMAC."""

    def __init__(self, config: JwtConfig, size: int = VERIFIED_TOKENS,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.size = size
        self.clock = clock
        self._accepted: dict[str, tuple[float, Principal]] = {}

    def verify(self, token: str) -> Principal:
        hit = self._accepted.get(token)
        if hit is not None:
            if self.clock() < hit[0]:
                return hit[1]
            del self._accepted[token]
        principal, claims = _verify(token, self.config)
        exp = claims["exp"]
        if isinstance(exp, int | float):  # PyJWT has checked it; this tells mypy
            if len(self._accepted) >= self.size:
                del self._accepted[next(iter(self._accepted))]  # the oldest goes first
            self._accepted[token] = (exp + LEEWAY_SECONDS, principal)
        return principal


def verify(token: str, config: JwtConfig) -> Principal:
    """Accept only the configured algorithm, signed by the current or previous secret."""
    return _verify(token, config)[0]


def _verify(token: str, config: JwtConfig) -> tuple[Principal, dict[str, object]]:
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise Unauthorized("malformed token") from None
    if header.get("alg") != config.algorithm:
        raise Unauthorized(f"token algorithm must be {config.algorithm}")
    claims: dict[str, object] | None = None
    for secret in _secrets(config):
        try:
            with warnings.catch_warnings():
                # Short secrets are the deployment's choice (the seed's example is 30 bytes).
                warnings.simplefilter("ignore", jwt.InsecureKeyLengthWarning)
                claims = jwt.decode(
                    token, secret, algorithms=[config.algorithm], leeway=LEEWAY_SECONDS,
                    options={"require": ["exp", "sub"]},
                )
            break
        except jwt.InvalidSignatureError:
            continue
        except jwt.ExpiredSignatureError:
            raise Unauthorized("token has expired") from None
        except jwt.ImmatureSignatureError:
            raise Unauthorized("token is not yet valid") from None
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthorized(f"token lacks the {exc.claim} claim") from None
        except jwt.PyJWTError:
            raise Unauthorized("invalid token") from None
    if claims is None:
        raise Unauthorized("token signature is invalid")
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise Unauthorized("token subject must be a non-empty string")
    roles = claims.get("roles", [])
    if isinstance(roles, str):
        roles = [roles]
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise Unauthorized("token roles must be a list of strings")
    return Principal(user_id=subject, roles=frozenset(roles)), claims


def sign(config: JwtConfig, subject: str, roles: Sequence[str] = (),
         now: float | None = None) -> str:
    """A token with lifetime JWT_EXPIRES_IN, signed with JWT_SECRET."""
    issued = int(time.time() if now is None else now)
    payload = {"sub": subject, "roles": list(roles), "iat": issued,
               "exp": issued + config.expires_in}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jwt.InsecureKeyLengthWarning)
        return jwt.encode(payload, config.secret, algorithm=config.algorithm)
