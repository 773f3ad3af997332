"""The signed tokens and the pieces of authentication that hold no request: ``Principal``, ``TokenService``
(access tokens; the key of playback tokens) and the password hasher, gathered in ``AuthService`` with the login
rate limits (``SlidingWindow``, api/state.py).

api/auth.py and api/access.py build on these; they live apart so that api/keys.py can name their types without
importing the handlers.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import argon2
import jwt

from api.state import SlidingWindow
from common.settings import AuthSettings

log = logging.getLogger(__name__)

ALGORITHM = "HS256"
SECRET_FILE = "jwt_secret"
MIN_SECRET_LEN = 32
# Clock skew tolerated between API processes when checking exp/iat.
LEEWAY_S = 5


class InvalidToken(ValueError):
    """A token that does not check out; the message says why in words a client may see (never the token)."""


@dataclass(frozen=True)
class Principal:
    """Who a request is: the account, the profile its token selected, and the account's roles."""

    account_id: str
    profile_id: str | None
    roles: frozenset[str]

    @property
    def viewer_id(self) -> str:
        """The key of per-viewer data (history, progress, ratings): the profile, else the account."""
        return self.profile_id or self.account_id

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles

    def has_role(self, role: str) -> bool:
        return role in self.roles or self.is_admin


# --- keys and tokens --------------------------------------------------------------------------------


def load_secret(settings: AuthSettings) -> bytes:
    """JWT_SECRET, or the local development secret in the state directory (created on first use)."""
    if settings.jwt_secret:
        if len(settings.jwt_secret) < MIN_SECRET_LEN:
            raise ValueError(f"JWT_SECRET must be at least {MIN_SECRET_LEN} characters")
        return settings.jwt_secret.encode()
    path: Path = settings.state_dir / SECRET_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # O_EXCL: two processes starting at once cannot both write a secret; the loser reads the winner's.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(48))
        log.info("generated a local token signing secret in %s", path)
    for _ in range(50):
        secret = path.read_text().strip()
        if len(secret) >= MIN_SECRET_LEN:
            return secret.encode()
        time.sleep(0.02)  # the creating process is still writing it
    raise ValueError(f"{path} holds no usable secret; delete it to get a new one")


class TokenService:
    """Issues and checks the signed tokens: access tokens here, playback tokens for api/access.py.

    Each use gets its own key derived from the one secret (HMAC with a label), and its own audience, so a token
    of one kind is never accepted as another.
    """

    def __init__(self, settings: AuthSettings, secret: bytes) -> None:
        self.settings = settings
        self._access_key = hmac.new(secret, b"vidplat access token", hashlib.sha256).digest()
        self.playback_key = hmac.new(secret, b"vidplat playback token", hashlib.sha256).digest()

    def __repr__(self) -> str:  # never print keys
        return f"TokenService(issuer={self.settings.jwt_issuer!r})"

    def issue_access(self, principal: Principal, now: datetime | None = None) -> str:
        now = now or datetime.now(UTC)
        claims = {
            "iss": self.settings.jwt_issuer,
            "aud": self.settings.jwt_audience,
            "sub": principal.account_id,
            "pid": principal.profile_id,
            "roles": sorted(principal.roles),
            "iat": now,
            "exp": now + timedelta(seconds=self.settings.access_ttl_s),
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(claims, self._access_key, algorithm=ALGORITHM, headers={"typ": "at+jwt"})

    def verify_access(self, token: str) -> Principal:
        try:
            claims = jwt.decode(
                token,
                self._access_key,
                algorithms=[ALGORITHM],  # pinned: the header's alg is never trusted
                audience=self.settings.jwt_audience,
                issuer=self.settings.jwt_issuer,
                leeway=LEEWAY_S,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("access token expired") from None
        except jwt.InvalidTokenError:
            raise InvalidToken("invalid access token") from None
        roles, profile_id, subject = claims.get("roles"), claims.get("pid"), claims["sub"]
        if (
            not isinstance(subject, str)
            or not isinstance(roles, list)
            or not all(isinstance(r, str) for r in roles)
            or not (profile_id is None or isinstance(profile_id, str))
        ):
            raise InvalidToken("invalid access token")
        return Principal(subject, profile_id, frozenset(roles))


# --- the service ------------------------------------------------------------------------------------


@dataclass
class AuthService:
    tokens: TokenService
    hasher: argon2.PasswordHasher
    dummy_hash: str
    login_failures_by_email: SlidingWindow
    login_failures_by_client: SlidingWindow
    signups_by_client: SlidingWindow


def password_hasher() -> argon2.PasswordHasher:
    # OWASP Password Storage Cheat Sheet, argon2id: m=19 MiB, t=2, p=1.
    return argon2.PasswordHasher(
        time_cost=2, memory_cost=19 * 1024, parallelism=1, hash_len=32, salt_len=16, type=argon2.Type.ID
    )
