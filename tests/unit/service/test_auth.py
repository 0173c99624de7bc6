from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from authz_service import auth
from authz_service.config import JwtConfig
from authz_service.domain import Principal
from authz_service.errors import Unauthorized

SECRET = "current-secret-0123456789abcdef0123"
PREVIOUS = "previous-secret-0123456789abcdef012"
CONFIG = JwtConfig(secret=SECRET, previous_secret=PREVIOUS, expires_in=600)


def token(claims: dict[str, object], secret: str = SECRET, alg: str = "HS256") -> str:
    return jwt.encode(claims, secret, algorithm=alg)


def valid_claims(**extra: object) -> dict[str, object]:
    return {"sub": "user-1", "exp": int(time.time()) + 300, **extra}


def unsigned(claims: dict[str, object]) -> str:
    def part(data: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _signed(header: dict[str, object], claims: dict[str, object], key: bytes = SECRET.encode()
            ) -> str:
    """HS256 over a header and claims PyJWT would refuse to write (Infinity, odd algs)."""
    signing = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    return f"{signing}.{_b64(hmac.new(key, signing.encode(), hashlib.sha256).digest())}"


def _rsa() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _hs256_keyed_with_a_public_key() -> str:
    """The HS/RS confusion: an RSA public key (public by definition) as the HMAC secret."""
    pem = _rsa().public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return _signed({"alg": "HS256", "typ": "JWT"}, valid_claims(), pem)


def _tampered() -> str:
    header, _, signature = token(valid_claims()).split(".")
    return f"{header}.{_b64(json.dumps(valid_claims(roles=['admin'])).encode())}.{signature}"


def test_valid_token_gives_principal_with_roles() -> None:
    principal = auth.verify(token(valid_claims(roles=["admin"])), CONFIG)
    assert principal.user_id == "user-1"
    assert principal.is_admin


def test_previous_secret_still_verifies_during_rotation() -> None:
    assert auth.verify(token(valid_claims(), PREVIOUS), CONFIG).user_id == "user-1"


def test_previous_secret_is_not_accepted_when_not_configured() -> None:
    with pytest.raises(Unauthorized, match="signature"):
        auth.verify(token(valid_claims(), PREVIOUS), JwtConfig(secret=SECRET))


@pytest.mark.parametrize(("make", "message"), [
    (lambda: token(valid_claims(), "another-secret-0123456789abcdef0123"), "signature"),
    (lambda: unsigned(valid_claims()), "algorithm"),
    (lambda: token(valid_claims(), SECRET + "x" * 40, "HS512"), "algorithm"),
    (lambda: token(valid_claims(exp=int(time.time()) - 60)), "expired"),
    (lambda: token(valid_claims(nbf=int(time.time()) + 600)), "not yet valid"),
    (lambda: token({"sub": "user-1"}), "exp"),
    (lambda: token({"exp": int(time.time()) + 60}), "sub"),
    (lambda: token(valid_claims(sub="")), "subject"),
    (lambda: token(valid_claims(roles=[1])), "roles"),
    (lambda: "not.a.jwt", "malformed"),
    (lambda: jwt.encode(valid_claims(), _rsa(), algorithm="RS256"), "algorithm"),
    (lambda: _hs256_keyed_with_a_public_key(), "signature"),
    (lambda: _tampered(), "signature"),
    (lambda: token(valid_claims(iat=int(time.time()) + 600)), "not yet valid"),
    (lambda: token(valid_claims(sub=42)), "invalid token"),
    (lambda: token(valid_claims(roles={"admin": True})), "roles"),
    (lambda: _signed({"alg": "HS256"}, valid_claims(exp="tomorrow")), "invalid token"),
    (lambda: _signed({"alg": "HS256"}, valid_claims(exp=float("inf"))), "invalid token"),
    (lambda: _signed({"alg": "hs256"}, valid_claims()), "algorithm"),
    (lambda: _signed({"alg": "None"}, valid_claims()), "algorithm"),
])
def test_rejections(make: object, message: str) -> None:
    with pytest.raises(Unauthorized, match=message):
        auth.verify(make(), CONFIG)  # type: ignore[operator]


@pytest.mark.parametrize("header", [None, "", "Basic abc", "Bearer", "Bearer   "])
def test_bearer_header_is_required(header: str | None) -> None:
    with pytest.raises(Unauthorized):
        auth.bearer_token(header)


def test_service_token_lives_jwt_expires_in() -> None:
    signed = auth.sign(CONFIG, "authorization-service", ["service"], now=1_000_000)
    claims = jwt.decode(signed, SECRET, algorithms=["HS256"], options={"verify_exp": False})
    assert claims == {"sub": "authorization-service", "roles": ["service"],
                      "iat": 1_000_000, "exp": 1_000_600}


def test_verifier_checks_a_token_once_until_its_exp_passes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = auth._verify

    def counting(raw: str, config: JwtConfig) -> tuple[Principal, dict[str, object]]:
        calls.append(raw)
        return real(raw, config)

    monkeypatch.setattr(auth, "_verify", counting)
    now = [time.time()]
    verifier = auth.Verifier(CONFIG, clock=lambda: now[0])
    claims = valid_claims(roles=["admin"])
    raw = token(claims)
    assert verifier.verify(raw) == verifier.verify(raw)
    assert len(calls) == 1
    now[0] = float(claims["exp"]) + auth.LEEWAY_SECONDS  # type: ignore[arg-type]
    verifier.verify(raw)  # past exp + leeway: verified again (PyJWT decides)
    assert len(calls) == 2


def test_verifier_remembers_no_rejection_and_stays_bounded() -> None:
    verifier = auth.Verifier(CONFIG, size=2)
    bad = token(valid_claims(), "another-secret-0123456789abcdef0123")
    for _ in range(2):
        with pytest.raises(Unauthorized, match="signature"):
            verifier.verify(bad)
    for user in ("a", "b", "c"):
        verifier.verify(token(valid_claims(sub=user)))
    assert len(verifier._accepted) == 2
