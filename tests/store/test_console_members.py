"""Console members, sessions and invitations, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
import pytest_asyncio
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from promptdeck.domain.errors import Conflict, NotFound, RateLimited, Unauthorized, ValidationFailed
from promptdeck.domain.members import SESSION_IDLE
from promptdeck.domain.runs import utcnow
from promptdeck.domain.sign_in_throttle import SignInThrottle
from promptdeck.store.access import AccessStore
from promptdeck.store.console_members import MemberStore
from promptdeck.store.console_sessions import SessionStore
from promptdeck.store.tables import console_invites, console_members, console_sessions

PASSWORD = "correct horse battery"


class Stores:
    def __init__(self, db: AsyncEngine) -> None:
        self.db = db
        self.members = MemberStore(self.db)
        self.sessions = SessionStore(self.db)
        self.workspace_id = ""


@pytest_asyncio.fixture(loop_scope="session")
async def stores(engine: AsyncEngine) -> Stores:
    stores = Stores(engine)
    stores.workspace_id = await AccessStore(stores.db).first_workspace()
    return stores


async def test_members_are_unique_per_workspace_by_case_insensitive_email(stores: Stores) -> None:
    member = await stores.members.create(stores.workspace_id, " Ada@Example.com ", PASSWORD, "owner", "Ada")
    assert member.email == "ada@example.com" and member.role == "owner"
    with pytest.raises(Conflict, match="already a member"):
        await stores.members.create(stores.workspace_id, "ADA@example.com", PASSWORD, "viewer")
    with pytest.raises(ValidationFailed, match="at least 10 characters"):
        await stores.members.create(stores.workspace_id, "bo@example.com", "short", "viewer")
    with pytest.raises(ValidationFailed, match="role: expected one of viewer, editor, owner"):
        await stores.members.create(stores.workspace_id, "bo@example.com", PASSWORD, "admin")
    async with stores.db.connect() as conn:
        stored = (await conn.execute(sa.select(console_members.c.password_hash))).scalar_one()
    assert stored.startswith("$argon2id$") and PASSWORD not in stored


async def test_five_failed_sign_ins_pause_that_address_for_that_email_never_the_member(
    stores: Stores,
) -> None:
    await stores.members.create(stores.workspace_id, "cy@example.com", PASSWORD, "editor")
    clock = [1000.0]
    stores.members.throttle = SignInThrottle(clock=lambda: clock[0])
    for left in (4, 3, 2, 1):
        with pytest.raises(Unauthorized, match=f"After {left} more failed attempt"):
            await stores.members.sign_in("cy@example.com", "wrong password", "10.0.0.9")
    with pytest.raises(Unauthorized, match="try again in 1 minute"):
        await stores.members.sign_in("cy@example.com", "wrong password", "10.0.0.9")
    with pytest.raises(RateLimited, match="try again in 1 minute") as paused:
        await stores.members.sign_in("cy@example.com", PASSWORD, "10.0.0.9")  # not even looked at
    assert paused.value.retry_after == 60
    member = await stores.members.sign_in("cy@example.com", PASSWORD, "10.0.0.1")  # from elsewhere
    assert member.last_sign_in_at is not None

    # each further failure doubles the pause, up to 15 minutes; a success starts the count again
    for pause in (120, 240, 480, 900, 900):
        clock[0] += 3600 - 1  # within the hour the count is kept
        with pytest.raises(Unauthorized, match="try again in"):
            await stores.members.sign_in("cy@example.com", "wrong password", "10.0.0.9")
        assert stores.members.throttle.wait("cy@example.com", "10.0.0.9") == pause
    clock[0] += 900
    await stores.members.sign_in("cy@example.com", PASSWORD, "10.0.0.9")
    with pytest.raises(Unauthorized, match="After 4 more failed attempts"):
        await stores.members.sign_in("cy@example.com", "wrong password", "10.0.0.9")
    clock[0] += 3601  # an hour without a failure: forgotten
    assert stores.members.throttle.attempt("cy@example.com", "10.0.0.9") == 4
    stored = await stores.members.get(stores.workspace_id, member.id)
    assert stored.locked_until is None


async def test_an_unknown_email_is_refused_like_a_wrong_password(stores: Stores) -> None:
    """Word for word, count for count, pause for pause: nothing tells members apart."""
    await stores.members.create(stores.workspace_id, "di@example.com", PASSWORD, "viewer")
    for _ in range(6):
        answers = []
        for email in ("nobody@example.com", "di@example.com", "not an email"):
            with pytest.raises((Unauthorized, RateLimited)) as refused:
                await stores.members.sign_in(email, "wrong password", "10.0.0.9")
            answers.append((type(refused.value), refused.value.message))
        assert answers[0] == answers[1] == answers[2], answers


async def test_sessions_end_when_idle_too_long_past_their_lifetime_or_at_sign_out(stores: Stores) -> None:
    member = await stores.members.create(stores.workspace_id, "ed@example.com", PASSWORD, "editor")
    session, token = await stores.sessions.start(member)
    assert session.id != token and len(session.csrf_token) >= 32
    found = await stores.sessions.resolve(token)
    assert (
        found is not None
        and found.member.email == "ed@example.com"
        and found.csrf_token == session.csrf_token
    )
    assert await stores.sessions.resolve("not-a-token") is None

    async with stores.db.begin() as conn:  # 12 hours without a request
        await conn.execute(console_sessions.update().values(last_seen_at=utcnow() - SESSION_IDLE))
    assert await stores.sessions.resolve(token) is None

    _, token = await stores.sessions.start(member)
    async with stores.db.begin() as conn:  # 7 days since sign-in, however active
        await conn.execute(console_sessions.update().values(expires_at=utcnow() - timedelta(seconds=1)))
    assert await stores.sessions.resolve(token) is None

    session, token = await stores.sessions.start(member)
    await stores.sessions.end(session.id)
    assert await stores.sessions.resolve(token) is None
    async with stores.db.connect() as conn:
        assert (
            await conn.execute(sa.select(sa.func.count()).select_from(console_sessions))
        ).scalar_one() == 0


async def test_a_password_change_ends_the_other_sessions(stores: Stores) -> None:
    member = await stores.members.create(
        stores.workspace_id, "fa@example.com", PASSWORD, "owner", must_change_password=True
    )
    kept, kept_token = await stores.sessions.start(member)
    _, other_token = await stores.sessions.start(member)
    with pytest.raises(ValidationFailed, match="not your current password"):
        await stores.members.change_password(member, "another password", "wrong", keep_session=kept.id)
    await stores.members.change_password(member, "another password", PASSWORD, keep_session=kept.id)
    assert await stores.sessions.resolve(kept_token) is not None
    assert await stores.sessions.resolve(other_token) is None
    assert not (await stores.members.get(stores.workspace_id, member.id)).must_change_password
    await stores.members.sign_in("fa@example.com", "another password")


async def test_the_last_owner_cannot_be_demoted_or_removed(stores: Stores) -> None:
    owner = await stores.members.create(stores.workspace_id, "go@example.com", PASSWORD, "owner")
    with pytest.raises(Conflict, match="cannot demote the last owner"):
        await stores.members.set_role(stores.workspace_id, owner.id, "editor")
    with pytest.raises(Conflict, match="cannot remove the last owner"):
        await stores.members.remove(stores.workspace_id, owner.id)
    second = await stores.members.create(stores.workspace_id, "ha@example.com", PASSWORD, "editor")
    assert (await stores.members.set_role(stores.workspace_id, second.id, "owner")).role == "owner"
    _, token = await stores.sessions.start(owner)
    await stores.members.remove(stores.workspace_id, owner.id)
    assert await stores.sessions.resolve(token) is None  # removed: signed out at once
    with pytest.raises(NotFound):
        await stores.members.get(stores.workspace_id, owner.id)


async def test_an_invitation_is_used_once_and_expires(stores: Stores) -> None:
    await stores.members.create(stores.workspace_id, "io@example.com", PASSWORD, "owner")
    invite, token = await stores.members.invite(
        stores.workspace_id, "Ju@Example.com", "viewer", "io@example.com"
    )
    assert invite.email == "ju@example.com" and invite.token_hash != token
    with pytest.raises(Conflict, match="already a member"):
        await stores.members.invite(stores.workspace_id, "io@example.com", "viewer", "io@example.com")
    member = await stores.members.accept_invite(token, "Ju", PASSWORD)
    assert (member.email, member.role, member.name) == ("ju@example.com", "viewer", "Ju")
    with pytest.raises(Conflict, match="already accepted"):
        await stores.members.accept_invite(token, "Ju", PASSWORD)
    with pytest.raises(NotFound, match="not valid"):
        await stores.members.find_invite("no-such-token")

    late, late_token = await stores.members.invite(stores.workspace_id, "ka@example.com", "editor", "io")
    async with stores.db.begin() as conn:
        await conn.execute(
            console_invites.update()
            .where(console_invites.c.token_hash == late.token_hash)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    with pytest.raises(Conflict, match="expired"):
        await stores.members.accept_invite(late_token, "Ka", PASSWORD)
