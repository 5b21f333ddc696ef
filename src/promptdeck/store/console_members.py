"""Console members (email + argon2 password + role) and the invitations that create them.

Passwords are hashed with argon2id off the event loop. Signing in with an unknown email
still costs one hash, and is answered and throttled exactly as a wrong password, so neither the
answer nor its timing tells which emails exist. Failed sign-ins slow down the address they come
from (`SignInThrottle`, domain/sign_in_throttle.py); they never lock a member out.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import secrets
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from promptdeck.domain.errors import Conflict, NotFound, RateLimited, Unauthorized, ValidationFailed
from promptdeck.domain.members import (
    INVITE_LIFETIME,
    check_password,
    check_role,
    normalize_email,
)
from promptdeck.domain.runs import new_id, utcnow
from promptdeck.domain.sign_in_throttle import SignInThrottle, failed_message, paused_message
from promptdeck.store.tables import console_invites, console_members, console_sessions, workspaces

HASHER = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """Verified against when the email is unknown, so both answers take one hash's time. Made at
    first use, not at import: an argon2 hash touches 64 MiB, the server's peak RSS otherwise."""
    return HASHER.hash(secrets.token_hex(16))


@dataclass(frozen=True, slots=True)
class Member:
    id: str
    workspace_id: str
    email: str
    name: str
    role: str
    must_change_password: bool
    failed_attempts: int
    locked_until: datetime | None
    created_at: datetime
    last_sign_in_at: datetime | None
    disabled_at: datetime | None
    instance_admin: bool = False  # may manage workspaces (docs/governance.md, "Workspaces")

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "email": self.email,
            "name": self.name,
            "role": self.role,
            "must_change_password": self.must_change_password,
            "created_at": self.created_at,
            "last_sign_in_at": self.last_sign_in_at,
        }


@dataclass(frozen=True, slots=True)
class Invite:
    token_hash: str
    workspace_id: str
    email: str
    role: str
    invited_by: str
    created_at: datetime
    expires_at: datetime
    accepted_at: datetime | None


def member_from_row(row: Any) -> Member:
    return Member(
        id=row.id,
        workspace_id=row.workspace_id,
        email=row.email,
        name=row.name,
        role=row.role,
        must_change_password=bool(row.must_change_password),
        failed_attempts=int(row.failed_attempts),
        locked_until=row.locked_until,
        created_at=row.created_at,
        last_sign_in_at=row.last_sign_in_at,
        disabled_at=row.disabled_at,
        instance_admin=bool(getattr(row, "instance_admin", False)),
    )


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(HASHER.hash, check_password(password))


async def _verify(password_hash: str, password: str) -> bool:
    def verify() -> bool:
        try:
            return HASHER.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(verify)


class MemberStore:
    def __init__(self, engine: AsyncEngine, throttle: SignInThrottle | None = None) -> None:
        self.engine = engine
        self.throttle = throttle or SignInThrottle()

    async def count(self, workspace_id: str) -> int:
        async with self.engine.connect() as conn:
            query = sa.select(sa.func.count()).where(console_members.c.workspace_id == workspace_id)
            return int((await conn.execute(query)).scalar_one())

    async def create(
        self,
        workspace_id: str,
        email: str,
        password: str,
        role: str,
        name: str = "",
        must_change_password: bool = False,
    ) -> Member:
        """A new member. An email that is a member elsewhere already is one person: its
        password must be that person's (`join`), and stays theirs."""
        email = normalize_email(email)
        person = await self._person(email)
        if person is not None:
            async with self.engine.connect() as conn:
                await self._refuse_duplicate(conn, workspace_id, email)
            if not await _verify(person.password_hash, password):
                raise ValidationFailed(
                    f"password: {email} is already a console member of another workspace; "
                    "enter that account's password to join this one"
                )
            return await self.join(workspace_id, email, role, name)
        return await self._insert(workspace_id, email, await hash_password(password), role, name,
                                  must_change_password=must_change_password)  # fmt: skip

    async def join(self, workspace_id: str, email: str, role: str, name: str = "") -> Member:
        """A membership in one more workspace for a person who has one already (same password,
        same instance-administrator standing); see `create` for a new person."""
        person = await self._person(normalize_email(email))
        if person is None:
            raise NotFound(f"no console member {email!r}")
        return await self._insert(workspace_id, person.email, person.password_hash, role,
                                  name or person.name, person.must_change_password,
                                  bool(person.instance_admin))  # fmt: skip

    async def _person(self, email: str) -> Any:
        """The oldest membership row of `email` (its password is every membership's), or None."""
        query = (
            sa.select(console_members)
            .where(console_members.c.email == email)
            .order_by(console_members.c.created_at)
            .limit(1)
        )
        async with self.engine.connect() as conn:
            return (await conn.execute(query)).first()

    async def _insert(
        self,
        workspace_id: str,
        email: str,
        password_hash: str,
        role: str,
        name: str,
        must_change_password: bool = False,
        instance_admin: bool = False,
    ) -> Member:
        values: dict[str, Any] = {
            "id": new_id(),
            "workspace_id": workspace_id,
            "email": email,
            "name": name.strip()[:200],
            "password_hash": password_hash,
            "role": check_role(role),
            "must_change_password": must_change_password,
            "instance_admin": instance_admin,
            "failed_attempts": 0,
            "locked_until": None,
            "created_at": utcnow(),
            "last_sign_in_at": None,
            "disabled_at": None,
        }
        async with self.engine.begin() as conn:
            await self._refuse_duplicate(conn, workspace_id, email)
            await conn.execute(console_members.insert().values(**values))
        return member_from_row(_Row(values))

    async def _refuse_duplicate(self, conn: AsyncConnection, workspace_id: str, email: str) -> None:
        found = await conn.execute(
            sa.select(console_members.c.id).where(
                console_members.c.workspace_id == workspace_id, console_members.c.email == email
            )
        )
        if found.first() is not None:
            raise Conflict(f"{email} is already a member of this workspace")

    async def get(self, workspace_id: str, member_id: str) -> Member:
        async with self.engine.connect() as conn:
            return await _member_in(conn, workspace_id, member_id)

    async def list(self, workspace_id: str) -> list[Member]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                sa.select(console_members)
                .where(console_members.c.workspace_id == workspace_id)
                .order_by(console_members.c.created_at, console_members.c.email)
            )
            return [member_from_row(r) for r in rows]

    async def sign_in(self, email: str, password: str, address: str = "") -> Member:
        """The member these credentials name, asked for from client `address`. Failures pause
        the address (`SignInThrottle`), whether the email is a member's or not; a paused
        attempt is refused (429) before the password is looked at. An email that is a member
        of several workspaces signs in to its oldest membership in an active workspace."""
        try:
            email = normalize_email(email)
            counted = email
        except ValidationFailed:
            email, counted = "", email.strip().lower()[:320]
        wait = self.throttle.wait(counted, address)
        if wait > 0:
            raise RateLimited(paused_message(wait), retry_after=wait)
        left = self.throttle.attempt(counted, address)
        now = utcnow()
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(console_members)
                    .join(workspaces, workspaces.c.id == console_members.c.workspace_id)
                    .where(
                        console_members.c.email == email,
                        console_members.c.disabled_at.is_(None),
                        workspaces.c.archived_at.is_(None),
                    )
                    .order_by(console_members.c.created_at)
                    .limit(1)
                )
            ).first()
        if row is None:
            await _verify(await asyncio.to_thread(_dummy_hash), password)
            raise Unauthorized(failed_message(left, self.throttle.wait(counted, address)))
        member = member_from_row(row)
        if not await _verify(row.password_hash, password):  # no write: as quick as an unknown email
            raise Unauthorized(failed_message(left, self.throttle.wait(counted, address)))
        self.throttle.succeeded(counted, address)
        async with self.engine.begin() as conn:
            await conn.execute(
                console_members.update()
                .where(console_members.c.id == member.id)
                .values(failed_attempts=0, locked_until=None, last_sign_in_at=now)
            )
        return replace(member, failed_attempts=0, locked_until=None, last_sign_in_at=now)

    async def membership(self, email: str, workspace_id: str) -> Member:
        """`email`'s enabled membership in the active workspace `workspace_id` (to switch to it)."""
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(console_members)
                    .join(workspaces, workspaces.c.id == console_members.c.workspace_id)
                    .where(
                        console_members.c.email == email,
                        console_members.c.workspace_id == workspace_id,
                        console_members.c.disabled_at.is_(None),
                        workspaces.c.archived_at.is_(None),
                    )
                )
            ).first()
        if row is None:
            raise NotFound("you are not a member of that workspace, or it is archived")
        return member_from_row(row)

    async def first_owner(self, workspace_id: str) -> Member | None:
        members = [m for m in await self.list(workspace_id) if m.role == "owner"]
        return members[0] if members else None

    async def still_has_password(self, member: Member, password: str) -> bool:
        """Whether `password` is still this member's (for `quickstart` showing its saved one)."""
        async with self.engine.connect() as conn:
            stored = (
                await conn.execute(
                    sa.select(console_members.c.password_hash).where(console_members.c.id == member.id)
                )
            ).scalar_one_or_none()
        return stored is not None and await _verify(stored, password)

    async def change_password(
        self, member: Member, new_password: str, current_password: str | None, keep_session: str | None
    ) -> None:
        """Set a new password (checking the current one unless it is `None`, as after an
        invite) for every membership of the member's email, and end their other sessions."""
        if current_password is not None:
            async with self.engine.connect() as conn:
                stored = (
                    await conn.execute(
                        sa.select(console_members.c.password_hash).where(console_members.c.id == member.id)
                    )
                ).scalar_one()
            if not await _verify(stored, current_password):
                raise ValidationFailed("current password: that is not your current password")
            if new_password == current_password:
                raise ValidationFailed("new password: choose a password different from the current one")
        new_hash = await hash_password(new_password)
        async with self.engine.begin() as conn:
            await conn.execute(
                console_members.update()
                .where(console_members.c.email == member.email)
                .values(password_hash=new_hash, must_change_password=False)
            )
            same_person = sa.select(console_members.c.id).where(console_members.c.email == member.email)
            others: sa.ColumnElement[bool] = console_sessions.c.member_id.in_(same_person)
            if keep_session is not None:
                others &= console_sessions.c.id != keep_session
            await conn.execute(console_sessions.delete().where(others))

    async def set_role(self, workspace_id: str, member_id: str, role: str) -> Member:
        check_role(role)
        async with self.engine.begin() as conn:
            member = await self._locked_member(conn, workspace_id, member_id)
            if member.role == "owner" and role != "owner":
                await self._refuse_last_owner(conn, workspace_id, "demote")
            await conn.execute(
                console_members.update().where(console_members.c.id == member_id).values(role=role)
            )
        return await self.get(workspace_id, member_id)

    async def remove(self, workspace_id: str, member_id: str) -> Member:
        """Delete a member and end their sessions."""
        async with self.engine.begin() as conn:
            member = await self._locked_member(conn, workspace_id, member_id)
            if member.role == "owner":
                await self._refuse_last_owner(conn, workspace_id, "remove")
            await conn.execute(console_sessions.delete().where(console_sessions.c.member_id == member_id))
            await conn.execute(console_members.delete().where(console_members.c.id == member_id))
        return member

    async def _locked_member(self, conn: AsyncConnection, workspace_id: str, member_id: str) -> Member:
        """The member, with the workspace's owners locked (PostgreSQL) so two concurrent
        demotions cannot both pass the last-owner check."""
        owners = sa.select(console_members.c.id).where(
            console_members.c.workspace_id == workspace_id, console_members.c.role == "owner"
        )
        await conn.execute(owners.with_for_update())
        return await _member_in(conn, workspace_id, member_id)

    async def _refuse_last_owner(self, conn: AsyncConnection, workspace_id: str, what: str) -> None:
        owners = (
            await conn.execute(
                sa.select(sa.func.count()).where(
                    console_members.c.workspace_id == workspace_id,
                    console_members.c.role == "owner",
                    console_members.c.disabled_at.is_(None),
                )
            )
        ).scalar_one()
        if owners <= 1:
            raise Conflict(f"cannot {what} the last owner; make another member an owner first")

    async def invite(self, workspace_id: str, email: str, role: str, invited_by: str) -> tuple[Invite, str]:
        """A new invitation and its token (shown once, as a link)."""
        email = normalize_email(email)
        token = secrets.token_urlsafe(32)
        now = utcnow()
        invite = Invite(token_hash(token), workspace_id, email, check_role(role), invited_by, now,
                        now + INVITE_LIFETIME, None)  # fmt: skip
        async with self.engine.begin() as conn:
            await self._refuse_duplicate(conn, workspace_id, email)
            await conn.execute(console_invites.insert().values(**_invite_values(invite)))
        return invite, token

    async def find_invite(self, token: str) -> Invite:
        """The open invitation this token names; a clear error when it is unknown, used or expired."""
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(console_invites).where(console_invites.c.token_hash == token_hash(token))
                )
            ).first()
        if row is None:
            raise NotFound("this invitation link is not valid; ask an owner for a new one")
        invite = Invite(**{c.name: getattr(row, c.name) for c in console_invites.columns})
        if invite.accepted_at is not None:
            raise Conflict("this invitation was already accepted; sign in instead")
        if invite.expires_at <= utcnow():
            raise Conflict("this invitation has expired; ask an owner for a new one")
        return invite

    async def accept_invite(self, token: str, name: str, password: str) -> Member:
        invite = await self.find_invite(token)
        member = await self.create(invite.workspace_id, invite.email, password, invite.role, name)
        async with self.engine.begin() as conn:
            await conn.execute(
                console_invites.update()
                .where(console_invites.c.token_hash == invite.token_hash)
                .values(accepted_at=utcnow())
            )
        return member


async def _member_in(conn: AsyncConnection, workspace_id: str, member_id: str) -> Member:
    """The member with this id, looked up only in this workspace (an id from another one is
    not found, never shown)."""
    row = (
        await conn.execute(
            sa.select(console_members).where(
                console_members.c.id == member_id, console_members.c.workspace_id == workspace_id
            )
        )
    ).first()
    if row is None:
        raise NotFound(f"no member {member_id!r} in this workspace")
    return member_from_row(row)


def _invite_values(invite: Invite) -> dict[str, Any]:
    return {c.name: getattr(invite, c.name) for c in console_invites.columns}


class _Row:
    """Attribute access over a dict, so a freshly inserted row reads like a fetched one."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)
