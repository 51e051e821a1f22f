"""Which user a provider's sign-in is: matched by subject, linked by a verified email only, never
re-linked; every link in ``identity_links``. On both backends."""

from __future__ import annotations

import asyncio
import logging

import pytest

from plugins.auth import UserDirectory
from plugins.auth.accounts import Accounts
from plugins.auth.config import AuthConfig, OIDCConfig
from plugins.auth.linking import LINKED_ELSEWHERE, UNVERIFIED, IdentityLinks, Linker
from plugins.auth.providers.base import SignedIn, SignInRefused
from plugins.auth.users import Users
from proxy_core.db import Database


def who(sub: str, email: str, *, verified: bool = True, name: str | None = None) -> SignedIn:
    return SignedIn(sub, email, name, email_verified=verified)


async def test_a_new_subject_with_a_verified_email_creates_a_user(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, "plugins.auth.linking"):
        user = await Linker(db, "oidc").user_for(who("sub-1", "ann@example.com", name="Ann"))
    [line] = [r for r in caplog.records if r.getMessage() == "auth: identity linked"]
    assert line.fields == {
        "user_id": str(user.id),
        "provider": "oidc",
        "subject": "sub-1",
        "email": "ann@example.com",
        "how": "created",
        "replaced": None,
    }
    assert (user.external_id, user.email, user.name) == ("sub-1", "ann@example.com", "Ann")
    [link] = await IdentityLinks(db).list()
    assert (link.user_id, link.provider, link.subject, link.email, link.how) == (
        user.id,
        "oidc",
        "sub-1",
        "ann@example.com",
        "created",
    )


async def test_a_known_subject_signs_in_without_a_new_link(db: Database) -> None:
    linker = Linker(db, "oidc")
    first = await linker.user_for(who("sub-1", "ann@example.com"))
    moved = await linker.user_for(who("sub-1", "ann@new.example.com", name="Ann"))
    assert moved.id == first.id and (moved.email, moved.name) == ("ann@new.example.com", "Ann")
    # an address the provider does not vouch for is not taken over into the account
    kept = await linker.user_for(who("sub-1", "boss@example.com", verified=False))
    assert kept.id == first.id and kept.email == "ann@new.example.com"
    assert len(await IdentityLinks(db).list()) == 1


async def test_an_unverified_email_neither_creates_nor_links(db: Database) -> None:
    linker = Linker(db, "oidc")
    with pytest.raises(SignInRefused, match="has not confirmed") as refused:
        await linker.user_for(who("sub-1", "ann@example.com", verified=False))
    assert refused.value.message == UNVERIFIED and refused.value.status == 403
    added = await Users(db).create("bob@example.com")
    with pytest.raises(SignInRefused, match="has not confirmed"):
        await linker.user_for(who("sub-2", "BOB@example.com", verified=False))
    assert (await Users(db).get(added.id)).external_id is None
    assert await IdentityLinks(db).list() == [] and len(await Users(db).list()) == 1


async def test_a_verified_email_links_an_added_user_once(db: Database) -> None:
    linker = Linker(db, "oidc")
    added = await Users(db).create("bob@example.com", name="Bob")
    linked = await linker.user_for(who("sub-2", "Bob@example.com"))
    assert linked.id == added.id and linked.external_id == "sub-2" and linked.name == "Bob"
    [link] = await IdentityLinks(db).list(added.id)
    assert (link.subject, link.how) == ("sub-2", "email")
    # a second subject with the same (verified) address is someone else: never re-linked
    with pytest.raises(SignInRefused) as refused:
        await linker.user_for(who("sub-3", "bob@example.com"))
    assert refused.value.message == LINKED_ELSEWHERE
    assert (await Users(db).get(added.id)).external_id == "sub-2"
    assert len(await IdentityLinks(db).list()) == 1


async def test_concurrent_links_of_two_subjects_to_one_user_let_one_win(db: Database) -> None:
    linker = Linker(db, "oidc")
    added = await Users(db).create("cy@example.com")
    results = await asyncio.gather(
        linker.user_for(who("sub-a", "cy@example.com")),
        linker.user_for(who("sub-b", "cy@example.com")),
        return_exceptions=True,
    )
    won = [r for r in results if not isinstance(r, BaseException)]
    lost = [r for r in results if isinstance(r, SignInRefused)]
    assert len(won) == 1 and len(lost) == 1 and won[0].id == added.id
    [link] = await IdentityLinks(db).list()
    assert link.subject == (await Users(db).get(added.id)).external_id


async def test_concurrent_first_sign_ins_make_one_user(db: Database) -> None:
    linker = Linker(db, "oidc")
    first, second = await asyncio.gather(
        linker.user_for(who("sub-9", "eve@example.com")), linker.user_for(who("sub-9", "eve@example.com"))
    )
    assert first.id == second.id
    assert len(await Users(db).list()) == 1 and len(await IdentityLinks(db).list()) == 1


async def test_an_unverified_admin_address_on_a_known_subject_does_not_make_an_admin(db: Database) -> None:
    config = AuthConfig(
        provider="oidc",
        oidc=OIDCConfig(issuer="https://id.example.com", client_id="c"),
        cookie_secret="s" * 40,
        admins=("boss@example.com",),
    )
    accounts = Accounts(db, config, UserDirectory(db))
    member = await accounts.sign_in(who("sub-m", "mallory@example.com"))
    assert member.role == "member"
    still = await accounts.sign_in(who("sub-m", "boss@example.com", verified=False))
    assert (still.id, still.email, still.role) == (member.id, "mallory@example.com", "member")
    boss = await accounts.sign_in(who("sub-b", "boss@example.com"))
    assert boss.role == "admin"


async def test_a_subject_another_provider_gave_is_replaced_by_a_verified_link(db: Database) -> None:
    """The deployment moved from email codes to OIDC: alice's ``email:`` subject is not OIDC's."""
    by_code = await Linker(db, "email_code").user_for(who("email:alice@example.com", "alice@example.com"))
    oidc = Linker(db, "oidc")
    with pytest.raises(SignInRefused, match="has not confirmed"):
        await oidc.user_for(who("oidc-alice", "alice@example.com", verified=False))
    linked = await oidc.user_for(who("oidc-alice", "alice@example.com"))
    assert linked.id == by_code.id and linked.external_id == "oidc-alice"
    latest = (await IdentityLinks(db).list(by_code.id))[0]
    assert (latest.provider, latest.how, latest.replaced) == ("oidc", "email", "email:alice@example.com")
    # now alice's subject is OIDC's: another OIDC subject with her address is refused
    with pytest.raises(SignInRefused, match="different identity"):
        await oidc.user_for(who("oidc-mallory", "alice@example.com"))
    # and back on email codes, the OIDC subject is another provider's again
    back = await Linker(db, "email_code").user_for(who("email:alice@example.com", "alice@example.com"))
    assert back.id == by_code.id and back.external_id == "email:alice@example.com"


async def test_an_unrecorded_subject_counts_as_this_providers(db: Database) -> None:
    """A user linked before the trail existed: its subject is assumed to be this provider's."""
    users = Users(db)
    old = await users.create("old@example.com", external_id="legacy-sub")
    with pytest.raises(SignInRefused, match="different identity"):
        await Linker(db, "oidc").user_for(who("new-sub", "old@example.com"))
    assert (await users.get(old.id)).external_id == "legacy-sub"
