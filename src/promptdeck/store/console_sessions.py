"""Console sign-in sessions: the cookie holds a random token, the database its SHA-256.

A session ends after SESSION_IDLE without a request, SESSION_LIFETIME after sign-in
whatever the activity, at sign-out, or when the member changes password or is removed.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from promptdeck.domain.members import SESSION_IDLE, SESSION_LIFETIME
from promptdeck.domain.runs import utcnow
from promptdeck.store.console_members import Member, member_from_row, token_hash
from promptdeck.store.tables import console_members, console_sessions

# last_seen_at is written at most this often, so reading a page is not a write every time.
TOUCH_EVERY = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class Session:
    id: str
    member: Member
    csrf_token: str
    created_at: datetime
    expires_at: datetime


class SessionStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def start(self, member: Member) -> tuple[Session, str]:
        """A new session and its cookie token (never stored)."""
        token = secrets.token_urlsafe(32)
        now = utcnow()
        session = Session(token_hash(token), member, secrets.token_urlsafe(32), now, now + SESSION_LIFETIME)
        async with self.engine.begin() as conn:
            await conn.execute(
                console_sessions.insert().values(
                    id=session.id,
                    member_id=member.id,
                    csrf_token=session.csrf_token,
                    created_at=now,
                    last_seen_at=now,
                    expires_at=session.expires_at,
                )
            )
        return session, token

    async def resolve(self, token: str) -> Session | None:
        """The live session this cookie token names, or None (unknown, idle too long, past its
        lifetime, or its member disabled); an expired one is deleted."""
        now = utcnow()
        session_id = token_hash(token)
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(
                        console_sessions.c.csrf_token,
                        console_sessions.c.created_at.label("session_created_at"),
                        console_sessions.c.last_seen_at,
                        console_sessions.c.expires_at,
                        console_members,
                    )
                    .join(console_members, console_members.c.id == console_sessions.c.member_id)
                    .where(console_sessions.c.id == session_id)
                )
            ).first()
        if row is None:
            return None
        if row.expires_at <= now or row.last_seen_at + SESSION_IDLE <= now or row.disabled_at is not None:
            await self.end(session_id)
            return None
        if now - row.last_seen_at >= TOUCH_EVERY:
            async with self.engine.begin() as conn:
                await conn.execute(
                    console_sessions.update()
                    .where(console_sessions.c.id == session_id)
                    .values(last_seen_at=now)
                )
        return Session(
            session_id, member_from_row(row), row.csrf_token, row.session_created_at, row.expires_at
        )

    async def end(self, session_id: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(console_sessions.delete().where(console_sessions.c.id == session_id))

    async def end_expired(self) -> int:
        """Delete every session past its lifetime or idle too long; returns how many."""
        now = utcnow()
        async with self.engine.begin() as conn:
            result = await conn.execute(
                console_sessions.delete().where(
                    (console_sessions.c.expires_at <= now)
                    | (console_sessions.c.last_seen_at <= now - SESSION_IDLE)
                )
            )
        return int(result.rowcount)
