"""What only the HTTP layer can do, for st.App (app.py serves dashboard.py with these):

- COOKIE_ROUTE: redeems a ticket from lib/ui/cookie.py and sets (or clears) the sign-in
  cookie HttpOnly, SameSite=Strict, Secure in production. Only for requests whose Origin is
  the app's own (or an allowed one).
- Downloads need a live session: Streamlit 1.67 serves st.download_button files at
  /media/<hash>.<ext> to any client that has the URL, for as long as they stay in memory (they
  outlive the click, a rerun and the browser tab until some later run prunes them). Here a
  /media/ request is answered only with the sign-in cookie of a live admin session, never to
  another origin, and never cached.
- Security headers on every response: no framing by other origins (clickjacking), no MIME
  sniffing, no referrer to other origins.

Middleware runs on HTTP requests only; the websocket (where pages are drawn) is guarded in
lib/ui/signin.py.
"""

from __future__ import annotations

import json
import logging

import anyio
from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from streamlit import config

from db.session import Actor, session_scope
from lib.ui.cookie import install_route, peek_order, take_order
from lib.ui.identity import is_admin_now
from lib.ui.runtime import get_cookie_settings, get_runtime
from lib.users.cookies import COOKIE_NAME
from lib.users.sessions import session_for_token

log = logging.getLogger("gemini_keys.ui")

MAX_TICKET_BODY = 1024
SECURITY_HEADERS = {
    "X-Frame-Options": "SAMEORIGIN",
    "Content-Security-Policy": "frame-ancestors 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
NO_STORE = "no-store, private"


async def redeem_cookie_ticket(request: Request) -> Response:
    """POST {"ticket": "..."}: the cookie change the script ordered, once."""
    refused = PlainTextResponse("refused", status_code=403, headers={"Cache-Control": NO_STORE})
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_TICKET_BODY:
            return refused
    try:
        ticket = json.loads(body).get("ticket")
    except (ValueError, AttributeError):
        return refused
    order = peek_order(ticket) if isinstance(ticket, str) else None
    if order is None or not order.cookie.origin_allowed(request.headers.get("origin"),
                                                        request.headers.get("host")):
        return refused
    if take_order(ticket) is None:  # redeemed by a parallel request just now
        return refused
    response = Response(status_code=204, headers={"Cache-Control": NO_STORE})
    cookie = order.cookie
    if order.value is None:
        response.delete_cookie(cookie.name, path="/", secure=cookie.secure, httponly=True,
                               samesite="strict")
    else:
        response.set_cookie(cookie.name, order.value, max_age=order.max_age, path="/",
                            secure=cookie.secure, httponly=True, samesite="strict")
    return response


ROUTES = [Route(install_route(), redeem_cookie_ticket, methods=["POST"])]


class SecurityHeaders:
    """Adds SECURITY_HEADERS to every HTTP response (where the app did not set them)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    if name not in headers:
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


def is_media_path(path: str) -> bool:
    """Streamlit's media route (st.download_button files), under server.baseUrlPath."""
    base = (config.get_option("server.baseUrlPath") or "").strip("/")
    return path.startswith(f"/{base}/media/" if base else "/media/")


def cookie_names_admin(token: str | None) -> bool:
    """Whether the sign-in cookie `token` belongs to a live session of a current admin."""
    if not token:
        return False
    runtime = get_runtime()
    cookie = get_cookie_settings(runtime)
    with session_scope(Actor.service("app"), engine=runtime.engine) as session:
        found = session_for_token(session, cookie.key, token)
    return found is not None and is_admin_now(runtime, Actor.user(found[1].user_id,
                                                                  found[1].email))


def cross_origin(request: Request) -> bool:
    """A request made by a page of another origin (another port of this host included)."""
    site = request.headers.get("sec-fetch-site")
    if site in ("cross-site", "same-site"):
        return True
    origin = request.headers.get("origin")
    if origin is None:
        return False
    cookie = get_cookie_settings(get_runtime())
    return not cookie.origin_allowed(origin, request.headers.get("host"))


class DownloadsNeedASession:
    """Answers /media/ requests only for a live admin session of our own origin."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_media_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        try:
            allowed = await anyio.to_thread.run_sync(
                lambda: not cross_origin(request)
                and cookie_names_admin(request.cookies.get(COOKIE_NAME)))
        except Exception:  # noqa: BLE001 - refuse, and say why in the log only
            log.exception("could not check the session of a download request")
            allowed = False
        if not allowed:
            response = PlainTextResponse("Sign in to download this file.", status_code=403,
                                         headers={"Cache-Control": NO_STORE})
            await response(scope, receive, send)
            return

        async def send_uncached(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)["Cache-Control"] = NO_STORE
            await send(message)

        await self.app(scope, receive, send_uncached)


MIDDLEWARE = [Middleware(SecurityHeaders), Middleware(DownloadsNeedASession)]
