"""The sign-in cookie, set and cleared HttpOnly through the HTTP layer.

A script run cannot send HTTP headers, and a cookie written by JavaScript can be read by
every page of the same host, other ports included. So the script parks the cookie's new
value under a one-time ticket, and a small script on the page posts the ticket to
COOKIE_ROUTE (lib/ui/asgi.py), whose response sets the cookie HttpOnly, SameSite=Strict,
Secure in production (or clears it). The snippet is rendered again on every run until the
ticket is redeemed or expires, so a rerun right after signing in or out cannot drop it.

The route exists only when the app is served through st.App (app.py). Served plainly
(`streamlit run dashboard.py`), no ticket is issued: a sign-in then lasts as long as the browser
tab's connection and a reload asks for the password again.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from dataclasses import dataclass, field

import streamlit as st

from lib.users.cookies import CookieSettings

log = logging.getLogger("gemini_keys.ui")

COOKIE_ROUTE = "/_gk/cookie"
TICKET_TTL_SECONDS = 120
_TICKET = "gk_cookie_ticket"  # this browser session's ticket not yet redeemed


@dataclass(frozen=True)
class CookieOrder:
    """What the HTTP response to a ticket does: set the cookie to `value`, or clear it."""

    cookie: CookieSettings
    value: str | None = field(repr=False)  # None: clear the cookie
    max_age: int | None  # seconds; None: a browser-session cookie
    expires: float  # time.monotonic() after which the ticket is void


_orders: dict[str, CookieOrder] = {}
_orders_lock = threading.Lock()
_route = {"installed": False}


def install_route() -> str:
    """Called by lib/ui/asgi.py when it builds the route: from then on tickets are issued."""
    _route["installed"] = True
    return COOKIE_ROUTE


def issue_ticket(cookie: CookieSettings, value: str | None, max_age: int | None = None
                 ) -> str | None:
    """Park a cookie change under a new one-time ticket (None while no route redeems them)."""
    if not _route["installed"]:
        return None
    ticket = secrets.token_urlsafe(24)
    now = time.monotonic()
    with _orders_lock:
        for stale in [t for t, o in _orders.items() if o.expires < now]:
            del _orders[stale]
        _orders[ticket] = CookieOrder(cookie, value, max_age, now + TICKET_TTL_SECONDS)
    return ticket


def order_cookie(cookie: CookieSettings, value: str, max_age: int | None) -> None:
    """Ask this browser to store the sign-in cookie (through the next runs' snippet)."""
    st.session_state[_TICKET] = issue_ticket(cookie, value, max_age)


def order_cookie_cleared(cookie: CookieSettings) -> None:
    """Ask this browser to drop the sign-in cookie."""
    st.session_state[_TICKET] = issue_ticket(cookie, None)


def peek_order(ticket: str) -> CookieOrder | None:
    """The ticket's order while it is valid (the route checks the request, then takes it)."""
    with _orders_lock:
        order = _orders.get(ticket)
    return order if order is not None and order.expires >= time.monotonic() else None


def take_order(ticket: str) -> CookieOrder | None:
    """Redeem a ticket: its order, once."""
    with _orders_lock:
        order = _orders.pop(ticket, None)
    return order if order is not None and order.expires >= time.monotonic() else None


def send_pending_order() -> None:
    """Render the snippet that redeems this session's ticket, while it is not redeemed."""
    ticket = st.session_state.get(_TICKET)
    if not ticket:
        return
    if peek_order(ticket) is None:
        del st.session_state[_TICKET]
        return
    # The ticket is URL-safe base64 and the route a constant; json.dumps quotes them anyway.
    st.html(f"""<script>
fetch({json.dumps(COOKIE_ROUTE)}, {{method: "POST", credentials: "same-origin",
  headers: {{"Content-Type": "application/json"}},
  body: JSON.stringify({{ticket: {json.dumps(ticket)}}})}});
</script>""", unsafe_allow_javascript=True, width=1)
