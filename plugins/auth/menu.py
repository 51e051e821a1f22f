"""The cloud menu: a small button in a corner of every page served from an upstream (Studio), with
the signed-in email and a way to sign out.

The ``auth`` stage offers ``<prefix>/menu.js`` for signed-in page loads (see
:func:`proxy_core.inject.offer_script`); a forwarding stage whose switch allows it (``upstream``:
``inject_html = true``) adds it to the pages. The script is written per user (the email is baked
in; nothing is fetched, so a page's ``connect-src`` does not matter), lives in a shadow root
with its own constructed stylesheet (no inline style for a policy to block, no style leaking either
way), and "Sign out" opens the sign-out page, which asks for the POST with its CSRF token.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from aiohttp import web

from proxy_core.db import StoreError

from .identity import Identity
from .resolver import SessionResolver

_SCRIPT = """(() => {
  try {
    if (window.top !== window || document.getElementById("shmastra-cloud-menu")) return;
    const who = %(who)s, signOut = %(sign_out)s, entries = %(entries)s;
    const host = document.createElement("div");
    host.id = "shmastra-cloud-menu";
    const root = host.attachShadow({ mode: "open" });
    const sheet = new CSSStyleSheet();
    sheet.replaceSync(`
      :host { all: initial; position: fixed; right: 12px; bottom: 12px; z-index: 2147483647;
              font: 13px/1.4 system-ui, sans-serif; }
      button { font: inherit; border: 1px solid #888; border-radius: 999px; background: #fff;
               color: #1a1a1a; padding: 4px 10px; cursor: pointer; opacity: .75; }
      button:hover, button:focus-visible, button[aria-expanded="true"] { opacity: 1; }
      div[role="menu"] { position: absolute; right: 0; bottom: 34px; min-width: 14rem; background: #fff;
               color: #1a1a1a; border: 1px solid #888; border-radius: 6px; padding: 8px;
               box-shadow: 0 4px 16px rgba(0,0,0,.2); }
      div[hidden] { display: none; }
      p { margin: 0 0 8px; overflow-wrap: anywhere; }
      a { color: #0a58ca; }
    `);
    root.adoptedStyleSheets = [sheet];
    const toggle = document.createElement("button");
    toggle.type = "button";
    toggle.textContent = "Cloud";
    toggle.setAttribute("aria-haspopup", "menu");
    toggle.setAttribute("aria-expanded", "false");
    const menu = document.createElement("div");
    menu.setAttribute("role", "menu");
    menu.hidden = true;
    const email = document.createElement("p");
    email.textContent = "Signed in as " + who;
    const link = document.createElement("a");
    link.setAttribute("role", "menuitem");
    link.href = signOut;
    link.textContent = "Sign out";
    menu.append(email);
    for (const entry of entries) {
      const item = document.createElement("a");
      item.setAttribute("role", "menuitem");
      item.href = entry.href;
      item.textContent = entry.label;
      const line = document.createElement("p");
      line.append(item);
      menu.append(line);
    }
    menu.append(link);
    toggle.addEventListener("click", () => {
      menu.hidden = !menu.hidden;
      toggle.setAttribute("aria-expanded", String(!menu.hidden));
    });
    root.append(menu, toggle);
    document.body.append(host);
  } catch (error) {
    /* the page comes first: a menu that cannot be shown stays away */
  }
})();
"""

_HEADERS = {
    "Cache-Control": "no-store, private",
    "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Resource-Policy": "same-origin",
}


@dataclass(frozen=True, slots=True)
class MenuEntry:
    """A link other stages add to the menu (``admins_only``: shown to admins alone)."""

    label: str
    href: str
    admins_only: bool = False


class CloudMenu:
    def __init__(self, resolver: SessionResolver, prefix: str) -> None:
        self.resolver = resolver
        self.prefix = prefix
        self.path = f"{prefix}/menu.js"
        self.entries: list[MenuEntry] = []

    def add(self, entry: MenuEntry) -> None:
        """Show ``entry`` above "Sign out" (the Manage stage adds its own for admins)."""
        if entry not in self.entries:
            self.entries.append(entry)

    def routes(self) -> list[web.RouteDef]:
        return [web.get(self.path, self.script)]

    async def script(self, request: web.Request) -> web.StreamResponse:
        """The menu for the signed-in user; an empty script for anyone else (nothing to show)."""
        try:
            found = await self.resolver.identify(request)
        except StoreError:
            found = None
        if not isinstance(found, Identity):
            body = "/* not signed in */\n"
        else:
            entries = [
                {"label": e.label, "href": e.href}
                for e in self.entries
                if found.is_admin or not e.admins_only
            ]
            body = _SCRIPT % {
                "who": _js(found.email),
                "sign_out": _js(f"{self.prefix}/sign-out"),
                "entries": _js_value(entries),
            }
        return web.Response(text=body, content_type="text/javascript", headers=_HEADERS)


def _js(value: str) -> str:
    """A JavaScript string literal that cannot end the script element it sits in."""
    return _js_value(value)


def _js_value(value: object) -> str:
    """A JavaScript literal (JSON) that cannot end the script element it sits in."""
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
