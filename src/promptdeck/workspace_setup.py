"""Setting a workspace up from the command line: `init`'s and `quickstart`'s steps.

Each opens the database, does its step and closes it again: the commands that call them run
once, before any server. The admin key `init` prints and the console owner it creates are the
instance's administrators (they manage workspaces); on a database from before workspaces could
be managed, running `init` again makes its new key, and the oldest active workspace's first
owner, instance administrators. The example is seeded only where nothing of it exists, so running
`quickstart` (`make run`) again never changes what a user made or moved.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from promptdeck.config import Settings


async def bootstrap(settings: Settings, key_file: Path | None = None) -> tuple[str, str]:
    """Migrate, make sure a workspace exists, and return (the oldest active workspace's id, an
    instance administrator's admin key in it). With `key_file`, a still-valid key saved there
    is reused instead of creating one."""
    from promptdeck.domain.change_events import ChangeFeed
    from promptdeck.domain.keys import hash_key
    from promptdeck.store.access import AccessStore
    from promptdeck.store.database import create_engine, migrate
    from promptdeck.store.workspaces import WorkspaceStore

    await asyncio.to_thread(migrate, settings.database_url)
    db = create_engine(settings.database_url)
    try:
        access, workspaces = AccessStore(db), WorkspaceStore(db, ChangeFeed())
        active = [w.id for w in await workspaces.all() if w.archived_at is None]
        workspace_id = active[0] if active else await access.first_workspace()
        if key_file is not None and key_file.exists():
            saved = key_file.read_text().strip()
            found = await access.find_by_hash(hash_key(saved))
            if found is not None and found.revoked_at is None and found.workspace_id == workspace_id:
                if not found.instance_admin:
                    await workspaces.make_instance_admin_key(found.id)
                return workspace_id, saved
        _, secret = await access.create_key(workspace_id, "admin", ["admin"], instance_admin=True)
        if key_file is not None:
            write_private(key_file, secret)
        return workspace_id, secret
    finally:
        await db.dispose()


def write_private(path: Path, secret: str) -> None:
    """A secret in a file only its owner can read, from the moment it exists."""
    from promptdeck.store.database import create_private_file

    create_private_file(path)
    path.chmod(0o600)  # a file left from before may have been readable by others
    path.write_text(secret + "\n")


async def ensure_owner(
    settings: Settings, workspace_id: str, email: str, password_file: Path | None = None
) -> tuple[str, str | None]:
    """Create the console's first owner, with a one-time password, when the workspace has no
    member; returns (owner email, that password or None when the owner existed already).
    With `password_file`, the password is saved there and shown again while it is unchanged.
    The owner is an instance administrator unless another member is one already."""
    from promptdeck.domain.change_events import ChangeFeed
    from promptdeck.domain.members import one_time_password
    from promptdeck.store.console_members import MemberStore
    from promptdeck.store.database import create_engine
    from promptdeck.store.workspaces import WorkspaceStore

    db = create_engine(settings.database_url)
    try:
        members, workspaces = MemberStore(db), WorkspaceStore(db, ChangeFeed())
        owner = await members.first_owner(workspace_id)
        if owner is not None and not await workspaces.has_instance_admin_member():
            await workspaces.make_instance_admin_member(owner.email)
        if owner is not None:
            saved = password_file.read_text().strip() if password_file and password_file.exists() else ""
            if saved and owner.must_change_password and await members.still_has_password(owner, saved):
                return owner.email, saved
            if password_file is not None:
                password_file.unlink(missing_ok=True)  # changed since: no longer worth keeping
            return owner.email, None
        password = one_time_password()
        owner = await members.create(workspace_id, email, password, "owner", must_change_password=True)
        if not await workspaces.has_instance_admin_member():
            await workspaces.make_instance_admin_member(owner.email)
        if password_file is not None:
            write_private(password_file, password)
        return owner.email, password
    finally:
        await db.dispose()


def owner_email_default() -> str:
    return os.environ.get("PROMPTDECK_OWNER_EMAIL", "owner@localhost")


def example_slug(example: Path) -> str:
    from promptdeck.domain.promptfile import load_prompt_file

    return str(load_prompt_file(example.read_text(), str(example))["prompt"])


async def seed_example(settings: Settings, example: Path) -> tuple[str, str, str | None, bool]:
    """(admin key, console owner's email, their one-time password while it is unchanged, whether
    the example was seeded). The example prompt is pushed only when the workspace has no prompt
    of its slug: running quickstart again never changes a prompt, version or variant."""
    from promptdeck.domain.errors import NotFound
    from promptdeck.domain.promptfile import load_prompt_file
    from promptdeck.store.database import create_engine
    from promptdeck.store.prompt_sync import PromptSync
    from promptdeck.store.prompts import PromptStore

    workspace_id, key = await bootstrap(settings, settings.data_dir / "dev-admin-key")
    owner, password = await ensure_owner(
        settings, workspace_id, owner_email_default(), settings.data_dir / "dev-owner-password"
    )
    document = load_prompt_file(example.read_text(), str(example))
    db = create_engine(settings.database_url)
    try:
        try:
            await PromptStore(db).get_prompt(workspace_id, str(document["prompt"]))
            seeded = False
        except NotFound:
            await PromptSync(db).push(workspace_id, document, actor="quickstart")
            seeded = True
    finally:
        await db.dispose()
    return key, owner, password, seeded
