"""No plugin reaches through another plugin's stage object into its parts."""

from __future__ import annotations

from .imports import modules
from .stage_parts import reach_ins

_MADE_UP = """
from plugins.auth import auth_stage
from plugins.vkey import VKeyStage, check_key
from proxy_core import find_stage

async def lookups(app, key, sid):
    gateway = find_stage(app, VKeyStage)
    await gateway.keys.check(key)
    await auth_stage(app).resolver.session(sid)
    await auth_stage(app).revoke_user(sid)
    await check_key(app, key)
"""


_KNOWN = {
    ("plugins.manage.api", "auth_stage(request.app).config.provider"),
    ("plugins.manage.pages", "auth_stage(request.app).config.provider"),
    ("plugins.manage.stage", "auth_stage(app).menu.add"),
}
"""Reach-ins that landed before this test, owned by ``manage``: each is to become a function of
``plugins.auth`` (the sign-in provider's name, adding a menu entry); none may be added."""


def test_the_finder_finds_reach_ins_and_only_those():
    assert reach_ins(_MADE_UP, "plugins.sandbox_router") == [
        (8, "gateway.keys.check"),
        (9, "auth_stage(app).resolver.session"),
    ]
    assert reach_ins(_MADE_UP, "plugins.vkey") == [(9, "auth_stage(app).resolver.session")]


def test_no_plugin_reaches_into_another_plugins_stage():
    found = [
        f"{name} line {line}: {expression}"
        for name, path in modules().items()
        if name.startswith("plugins.")
        for line, expression in reach_ins(path.read_text(), ".".join(name.split(".")[:2]))
        if (name, expression) not in _KNOWN
    ]
    assert found == []
