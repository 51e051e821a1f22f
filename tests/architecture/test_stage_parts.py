"""No plugin reaches through another plugin's stage object into its parts."""

from __future__ import annotations

from .imports import modules
from .stage_parts import reach_ins

_MADE_UP = """
from plugins.auth import auth_stage
from plugins.vkey import VKeyStage, check_key
from proxy_core import find_stage

async def lookups(app, key, sid, request):
    gateway = find_stage(app, VKeyStage)
    await gateway.keys.check(key)
    await auth_stage(app).resolver.session(sid)
    await auth_stage(app).identify(request)
    sessions = auth_stage(app).sessions
    provider = auth_stage(app).config.provider
    await check_key(app, key)
    await sessions.active(sid)
"""


def test_the_finder_finds_reach_ins_and_only_those():
    assert reach_ins(_MADE_UP, "plugins.sandbox_router") == [
        (8, "gateway.keys"),
        (9, "auth_stage(app).resolver"),
        (10, "auth_stage(app).identify"),
        (11, "auth_stage(app).sessions"),
        (12, "auth_stage(app).config"),
    ]
    assert reach_ins(_MADE_UP, "plugins.auth") == [(8, "gateway.keys")]


def test_no_plugin_reaches_into_another_plugins_stage():
    found = [
        f"{name} line {line}: {expression}"
        for name, path in modules().items()
        if name.startswith("plugins.")
        for line, expression in reach_ins(path.read_text(), ".".join(name.split(".")[:2]))
    ]
    assert found == []
