"""The sign-in pages: plain HTML that works without JavaScript, labelled fields, errors announced."""

from __future__ import annotations

from html import escape

from aiohttp import web

HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; "
    "base-uri 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}

_STYLE = """body{font:16px/1.5 system-ui,sans-serif;max-width:26rem;margin:4rem auto;padding:0 1rem;
color:#1a1a1a}
h1{font-size:1.5rem}label{display:block;font-weight:600;margin:.75rem 0 .25rem}
input{font:inherit;width:100%;box-sizing:border-box;padding:.5rem;border:1px solid #666;border-radius:4px}
button,a.button{display:inline-block;font:inherit;margin-top:1rem;padding:.5rem 1rem;border-radius:4px;
border:1px solid #1a1a1a;background:#1a1a1a;color:#fff;text-decoration:none;cursor:pointer}
a.button.secondary,button.secondary{background:#fff;color:#1a1a1a}
:focus-visible{outline:3px solid #0a58ca;outline-offset:2px}
p.alert{border-left:4px solid #b00020;padding:.25rem .75rem;background:#fdecee}
hr{margin:1.5rem 0;border:none;border-top:1px solid #ccc}"""


def _page(title: str, content: str, status: int = 200) -> web.Response:
    html = (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><main><h1>{escape(title)}</h1>{content}</main></body></html>\n"
    )
    return web.Response(status=status, text=html, content_type="text/html", headers=HEADERS)


def _alert(message: str | None) -> str:
    return f'<p class="alert" role="alert">{escape(message)}</p>' if message else ""


def _hidden(**fields: str) -> str:
    return "".join(f'<input type="hidden" name="{escape(k)}" value="{escape(v)}">' for k, v in fields.items())


def sign_in(
    *,
    prefix: str,
    csrf: str,
    next: str,
    sso_href: str | None,
    codes: bool,
    message: str | None = None,
    status: int = 200,
) -> web.Response:
    parts = [_alert(message)]
    if sso_href is not None:
        parts.append(f'<p><a class="button" href="{escape(sso_href)}">Continue with SSO</a></p>')
    if sso_href is not None and codes:
        parts.append("<hr>")
    if codes:
        parts.append(
            f'<form method="post" action="{escape(prefix)}/code">'
            f"{_hidden(csrf_token=csrf, next=next)}"
            '<label for="email">Email address</label>'
            '<input id="email" name="email" type="email" autocomplete="email" required autofocus>'
            '<button type="submit">Email me a sign-in code</button></form>'
        )
    return _page("Sign in", "".join(parts), status)


def enter_code(
    *, prefix: str, csrf: str, email: str, message: str | None = None, status: int = 200
) -> web.Response:
    content = (
        f"{_alert(message)}<p>If <strong>{escape(email)}</strong> may sign in here, "
        "a 6-digit code is on its way. "
        "It is valid for 10 minutes.</p>"
        f'<form method="post" action="{escape(prefix)}/code/verify">{_hidden(csrf_token=csrf)}'
        '<label for="code">Sign-in code</label>'
        '<input id="code" name="code" inputmode="numeric" pattern="[0-9]{6}" maxlength="6" '
        'autocomplete="one-time-code" required autofocus aria-describedby="code-help">'
        '<small id="code-help">Six digits, from the email.</small><br>'
        '<button type="submit">Sign in</button></form>'
        f'<p><a href="{escape(prefix)}/sign-in">Use another address</a></p>'
    )
    return _page("Enter your code", content, status)


def sign_out(*, prefix: str, csrf: str, email: str) -> web.Response:
    content = (
        f"<p>Signed in as <strong>{escape(email)}</strong>.</p>"
        f'<form method="post" action="{escape(prefix)}/sign-out">{_hidden(csrf_token=csrf)}'
        '<button type="submit">Sign out</button></form>'
    )
    return _page("Sign out", content)


def problem(*, prefix: str, status: int, title: str, message: str) -> web.Response:
    back = f'<p><a class="button secondary" href="{escape(prefix)}/sign-in">Back to sign-in</a></p>'
    content = _alert(message) + back
    return _page(title, content, status)
