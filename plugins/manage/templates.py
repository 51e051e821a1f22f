"""The page templates (Jinja2, autoescaped) as a shared resource the pages render through
``aiohttp_jinja2`` under this plugin's own app key."""

from __future__ import annotations

import jinja2
from aiohttp import web

from proxy_core import Readiness


class Templates(jinja2.Environment):
    name = "manage-templates"

    def __init__(self) -> None:
        super().__init__(
            loader=jinja2.PackageLoader("plugins.manage", "templates"),
            autoescape=jinja2.select_autoescape(["html"]),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def readiness(self) -> Readiness:
        return Readiness(True)


TEMPLATES = web.AppKey("plugins.manage.templates", jinja2.Environment)
