"""Accounts, profiles and refresh-token sessions in Cassandra (tables of migration 0006).

The API (api/auth.py) is the only writer, but for roles an operator grants:

    python -m sinks.accounts grant EMAIL admin     # or creator; "revoke EMAIL ROLE" takes one away

The account's next access token (a login or a refresh) carries the change.

Uniqueness of an e-mail and single use of a refresh token are
lightweight transactions (``IF NOT EXISTS`` / ``IF used_at = null``): two concurrent sign-ups with one e-mail, or
two concurrent refreshes with one token, cannot both win. Secrets never reach this module in the clear:
passwords arrive as argon2id hashes and refresh tokens as SHA-256 digests.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from cassandra.cluster import Session

from common.cassandra import cassandra_session, run

ROLES = ("viewer", "creator", "admin")


@dataclass(frozen=True)
class Account:
    account_id: str
    email: str
    password_hash: str
    display_name: str | None
    roles: frozenset[str]
    default_profile_id: str | None
    created_at: datetime | None


@dataclass(frozen=True)
class Profile:
    account_id: str
    profile_id: str
    name: str
    created_at: datetime | None


@dataclass(frozen=True)
class RefreshToken:
    token_id: str
    family_id: str
    account_id: str
    profile_id: str | None
    token_hash: bytes
    expires_at: datetime
    used_at: datetime | None


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)  # the driver returns naive UTC


class Accounts:
    def __init__(self, session: Session) -> None:
        self.session = session
        prepare = session.prepare
        self._claim_email = prepare("INSERT INTO accounts_by_email (email, account_id) VALUES (?, ?) IF NOT EXISTS")
        self._release_email = prepare("DELETE FROM accounts_by_email WHERE email = ? IF account_id = ?")
        self._by_email = prepare("SELECT account_id FROM accounts_by_email WHERE email = ?")
        self._insert_account = prepare(
            "INSERT INTO accounts (account_id, email, password_hash, display_name, roles, default_profile_id,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
        )
        self._get_account = prepare("SELECT * FROM accounts WHERE account_id = ?")
        self._set_roles = prepare("UPDATE accounts SET roles = ? WHERE account_id = ?")
        self._set_password = prepare("UPDATE accounts SET password_hash = ? WHERE account_id = ?")
        self._insert_profile = prepare(
            "INSERT INTO profiles (account_id, profile_id, name, created_at) VALUES (?, ?, ?, ?)"
        )
        self._profiles = prepare("SELECT * FROM profiles WHERE account_id = ?")
        self._profile = prepare("SELECT * FROM profiles WHERE account_id = ? AND profile_id = ?")
        self._delete_profile = prepare("DELETE FROM profiles WHERE account_id = ? AND profile_id = ?")
        self._insert_refresh = prepare(
            "INSERT INTO refresh_tokens (token_id, family_id, account_id, profile_id, token_hash, issued_at,"
            " expires_at) VALUES (?, ?, ?, ?, ?, ?, ?) USING TTL ?"
        )
        self._get_refresh = prepare("SELECT * FROM refresh_tokens WHERE token_id = ?")
        self._use_refresh = prepare("UPDATE refresh_tokens SET used_at = ? WHERE token_id = ? IF used_at = null")
        self._insert_family = prepare("INSERT INTO refresh_families (family_id, account_id) VALUES (?, ?) USING TTL ?")
        self._insert_family_by_account = prepare(
            "INSERT INTO refresh_families_by_account (account_id, family_id, created_at) VALUES (?, ?, ?) USING TTL ?"
        )
        self._get_family = prepare("SELECT revoked_at FROM refresh_families WHERE family_id = ?")
        self._revoke_family = prepare("UPDATE refresh_families SET revoked_at = ? WHERE family_id = ?")
        self._families_of = prepare("SELECT family_id FROM refresh_families_by_account WHERE account_id = ?")

    # --- accounts ---------------------------------------------------------------------------------

    async def create_account(
        self,
        account_id: str,
        email: str,
        password_hash: str,
        display_name: str | None,
        roles: Iterable[str],
        profile: Profile,
    ) -> bool:
        """A new account with its first profile; False (nothing written) when the e-mail is taken."""
        roles = set(roles)
        if not roles <= set(ROLES):
            raise ValueError(f"unknown roles {sorted(roles - set(ROLES))}")
        rows = await run(self.session, self._claim_email, (email, account_id))
        if not (rows and rows[0].applied):
            return False
        now = datetime.now(UTC)
        try:
            await run(self.session, self._insert_profile, (account_id, profile.profile_id, profile.name, now))
            await run(
                self.session,
                self._insert_account,
                (account_id, email, password_hash, display_name, roles, profile.profile_id, now),
            )
        except BaseException:
            # Give the e-mail back, so the person can sign up again instead of owning a half-made account.
            await run(self.session, self._release_email, (email, account_id))
            raise
        return True

    async def account_id_for_email(self, email: str) -> str | None:
        rows = await run(self.session, self._by_email, (email,))
        return rows[0].account_id if rows else None

    async def get_account(self, account_id: str) -> Account | None:
        rows = await run(self.session, self._get_account, (account_id,))
        if not rows:
            return None
        r = rows[0]
        return Account(
            r.account_id,
            r.email,
            r.password_hash,
            r.display_name,
            frozenset(r.roles or ()),
            r.default_profile_id,
            _utc(r.created_at),
        )

    async def set_roles(self, account_id: str, roles: Iterable[str]) -> None:
        roles = set(roles)
        if not roles <= set(ROLES):
            raise ValueError(f"unknown roles {sorted(roles - set(ROLES))}")
        await run(self.session, self._set_roles, (roles, account_id))

    async def set_password_hash(self, account_id: str, password_hash: str) -> None:
        """Store a re-hash made with stronger parameters (argon2's check_needs_rehash after a login)."""
        await run(self.session, self._set_password, (password_hash, account_id))

    # --- profiles ---------------------------------------------------------------------------------

    async def add_profile(self, profile: Profile) -> None:
        await run(
            self.session,
            self._insert_profile,
            (profile.account_id, profile.profile_id, profile.name, profile.created_at),
        )

    async def profiles(self, account_id: str) -> list[Profile]:
        rows = await run(self.session, self._profiles, (account_id,))
        return [Profile(r.account_id, r.profile_id, r.name, _utc(r.created_at)) for r in rows]

    async def get_profile(self, account_id: str, profile_id: str) -> Profile | None:
        rows = await run(self.session, self._profile, (account_id, profile_id))
        return Profile(rows[0].account_id, rows[0].profile_id, rows[0].name, _utc(rows[0].created_at)) if rows else None

    async def delete_profile(self, account_id: str, profile_id: str) -> None:
        await run(self.session, self._delete_profile, (account_id, profile_id))

    # --- refresh tokens ---------------------------------------------------------------------------

    async def start_family(self, family_id: str, account_id: str, ttl_s: int) -> None:
        """A new login session: the chain its refresh tokens rotate along."""
        await run(self.session, self._insert_family, (family_id, account_id, ttl_s))
        await run(self.session, self._insert_family_by_account, (account_id, family_id, datetime.now(UTC), ttl_s))

    async def store_refresh(self, token: RefreshToken, ttl_s: int) -> None:
        await run(
            self.session,
            self._insert_refresh,
            (
                token.token_id,
                token.family_id,
                token.account_id,
                token.profile_id,
                token.token_hash,
                datetime.now(UTC),
                token.expires_at,
                ttl_s,
            ),
        )

    async def get_refresh(self, token_id: str) -> RefreshToken | None:
        rows = await run(self.session, self._get_refresh, (token_id,))
        if not rows:
            return None
        r = rows[0]
        expires_at = _utc(r.expires_at)
        assert expires_at is not None
        return RefreshToken(
            r.token_id, r.family_id, r.account_id, r.profile_id, bytes(r.token_hash), expires_at, _utc(r.used_at)
        )

    async def use_refresh(self, token_id: str) -> bool:
        """Mark the token used; True only for the one caller that did (a second use is a replay)."""
        rows = await run(self.session, self._use_refresh, (datetime.now(UTC), token_id))
        return bool(rows and rows[0].applied)

    async def family_revoked(self, family_id: str) -> bool:
        rows = await run(self.session, self._get_family, (family_id,))
        # A family row gone (its TTL ran out) counts as revoked: nothing valid can still belong to it.
        return not rows or rows[0].revoked_at is not None

    async def revoke_family(self, family_id: str) -> None:
        await run(self.session, self._revoke_family, (datetime.now(UTC), family_id))

    async def revoke_all(self, account_id: str) -> int:
        """Revoke every login session of the account ("log out everywhere"); returns how many."""
        rows = await run(self.session, self._families_of, (account_id,))
        for row in rows:
            await self.revoke_family(row.family_id)
        return len(rows)


async def _change_role(email: str, role: str, grant: bool) -> str:
    session = await asyncio.to_thread(cassandra_session)
    try:
        accounts = await asyncio.to_thread(Accounts, session)
        account_id = await accounts.account_id_for_email(email.strip().lower())
        account = await accounts.get_account(account_id) if account_id else None
        if account is None:
            raise SystemExit(f"no account with e-mail {email}")
        roles = set(account.roles) | {role} if grant else set(account.roles) - {role}
        await accounts.set_roles(account.account_id, roles | {"viewer"})
        return f"{email}: roles {', '.join(sorted(roles | {'viewer'}))}"
    finally:
        await asyncio.to_thread(session.cluster.shutdown)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sinks.accounts", description="Grant or revoke account roles.")
    parser.add_argument("action", choices=("grant", "revoke"))
    parser.add_argument("email")
    parser.add_argument("role", choices=("creator", "admin"))
    args = parser.parse_args(argv)
    print(asyncio.run(_change_role(args.email, args.role, args.action == "grant")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
