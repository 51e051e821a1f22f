"""The users repository on both backends."""

from __future__ import annotations

import uuid

import pytest

from plugins.auth.users import Users
from proxy_core.db import CheckViolation, Database, NotFound, UniqueViolation


async def test_create_and_look_up(db: Database) -> None:
    users = Users(db)
    ann = await users.create(" Ann@Example.com ", name="Ann", role="admin")
    assert (ann.email, ann.name, ann.role, ann.disabled, ann.is_admin) == (
        "Ann@Example.com",
        "Ann",
        "admin",
        False,
        True,
    )
    assert isinstance(ann.id, uuid.UUID) and ann.created_at.tzinfo is not None
    assert await users.get(ann.id) == ann
    assert await users.find_by_email("ann@example.COM") == ann
    assert await users.find_by_email("bob@example.com") is None
    assert [u.email for u in await users.list()] == ["Ann@Example.com"]


async def test_domain_errors(db: Database) -> None:
    users = Users(db)
    await users.create("ann@example.com")
    with pytest.raises(UniqueViolation, match=r"^email already exists$"):
        await users.create("ANN@example.com")
    with pytest.raises(CheckViolation, match="role must be one of member, admin, not 'owner'"):
        await users.create("bob@example.com", role="owner")
    with pytest.raises(CheckViolation, match="not an email address"):
        await users.create("bob at example")
    with pytest.raises(NotFound, match=r"^no user with email nobody@example.com$"):
        await users.get_by_email("nobody@example.com")
    with pytest.raises(NotFound):
        await users.set_role(uuid.uuid4(), "admin")


async def test_role_and_disabled(db: Database) -> None:
    users = Users(db)
    bob = await users.create("bob@example.com")
    promoted = await users.set_role(bob.id, "admin")
    assert promoted.role == "admin" and promoted.updated_at >= bob.updated_at
    assert (await users.set_disabled(bob.id, True)).disabled is True
    assert (await users.get(bob.id)).disabled is True
    assert (await users.set_disabled(bob.id, False)).disabled is False


async def test_link_only_while_the_stored_subject_is_unchanged(db: Database) -> None:
    users = Users(db)
    invited = await users.create("cy@example.com", name="Cy")
    linked = await users.link(invited, "user_01", "CY@example.com", None)
    assert linked is not None and linked.id == invited.id
    assert (linked.external_id, linked.email, linked.name) == ("user_01", "CY@example.com", "Cy")
    # read before the link above: its subject changed meanwhile, so this one loses
    assert await users.link(invited, "user_02", "cy@example.com", "Mallory") is None
    assert (await users.get(invited.id)).external_id == "user_01"
    relinked = await users.link(linked, "user_03", "cy@example.com", None)
    assert relinked is not None and relinked.external_id == "user_03"
    moved = await users.update_profile(linked, "cy@new.example.com", None)
    assert moved.email == "cy@new.example.com" and moved.name == "Cy"


async def test_works_inside_a_transaction(db: Database) -> None:
    async with db.transaction() as tx:
        user = await Users(tx).create("fay@example.com")
        assert await Users(tx).get(user.id) == user
    assert await Users(db).get(user.id) == user
