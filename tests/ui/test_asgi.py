"""lib/ui/asgi.py over HTTP (Starlette's test client; the browser tests run it for real): the
cookie route, the download guard and the security headers."""

from __future__ import annotations

import datetime as dt

import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from db.session import Actor, session_scope
from lib.ui.asgi import MIDDLEWARE, ROUTES
from lib.ui.cookie import COOKIE_ROUTE, issue_ticket
from lib.ui.runtime import get_cookie_settings, get_runtime
from lib.users.cookies import COOKIE_NAME, CookieSettings
from lib.users.sessions import end_session, issue_token, start_session

OURS = {"Origin": "http://testserver"}


async def _media(request):
    return PlainTextResponse("created_at,action\n")


async def _home(request):
    return PlainTextResponse("home")


@pytest.fixture
def client() -> TestClient:
    app = Starlette(routes=[*ROUTES, Route("/media/{name}", _media), Route("/", _home)],
                    middleware=MIDDLEWARE)
    return TestClient(app)


def settings(**changes) -> CookieSettings:
    return CookieSettings(name=COOKIE_NAME, key="k" * 48, expiry_days=1, login_sleep_seconds=0,
                          dev_key=False, **changes)


def redeem(client, ticket, headers=OURS):
    return client.post(COOKIE_ROUTE, json={"ticket": ticket}, headers=headers)


def test_a_ticket_sets_the_cookie_httponly_strict_once(client):
    ticket = issue_ticket(settings(), "the.token.value", 86400)
    response = redeem(client, ticket)
    assert response.status_code == 204
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE_NAME}=the.token.value;")
    for attribute in ("HttpOnly", "Max-Age=86400", "Path=/", "SameSite=strict"):
        assert attribute in cookie
    assert "Secure" not in cookie and response.headers["cache-control"].startswith("no-store")
    assert redeem(client, ticket).status_code == 403  # once


def test_production_cookies_are_secure_and_a_clear_order_expires_it(client):
    set_ticket = issue_ticket(settings(secure=True), "v", None)
    cookie = redeem(client, set_ticket).headers["set-cookie"]
    assert "Secure" in cookie and "Max-Age" not in cookie  # not remembered: browser session
    cleared = redeem(client, issue_ticket(settings(secure=True), None)).headers["set-cookie"]
    assert cleared.startswith(f'{COOKIE_NAME}="";') and "Max-Age=0" in cleared


@pytest.mark.parametrize("headers", [{}, {"Origin": "http://testserver:8600"},
                                     {"Origin": "http://evil.example"}, {"Origin": "null"}],
                         ids=["no-origin", "another-port", "another-host", "null"])
def test_a_ticket_from_another_origin_is_refused_and_not_spent(client, headers):
    ticket = issue_ticket(settings(), "v", 60)
    refused = redeem(client, ticket, headers)
    assert refused.status_code == 403 and "set-cookie" not in refused.headers
    assert redeem(client, ticket).status_code == 204  # the page's own request still works


@pytest.mark.parametrize("body", [b"not json", b"[1]", b'{"ticket": 5}', b'{"ticket": "nope"}',
                                  b'{"ticket": "' + b"x" * 5000 + b'"}'])
def test_a_bad_ticket_request_is_refused(client, body):
    response = client.post(COOKIE_ROUTE, content=body, headers=OURS)
    assert response.status_code == 403 and "set-cookie" not in response.headers


def test_every_response_forbids_framing_by_other_origins(client):
    headers = client.get("/").headers
    assert headers["x-frame-options"] == "SAMEORIGIN"
    assert headers["content-security-policy"] == "frame-ancestors 'self'"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "same-origin"


def session_cookie(db, actor, *, end: bool = False) -> str:
    cookie = get_cookie_settings(get_runtime())
    with session_scope(Actor.service("app"), engine=db.engine) as session:
        sid, expires = start_session(session, actor.user_id, lifetime=dt.timedelta(hours=1))
        if end:
            end_session(session, sid)
    return issue_token(cookie.key, user_id=actor.user_id, session_id=sid, expires_at=expires,
                       remember=True)


@pytest.mark.one_server
def test_downloads_need_a_live_admin_session_of_our_own_origin(db, client, admin_actor,
                                                               member_actor):
    url = "/media/0123abcd.csv"
    assert client.get(url).status_code == 403  # no cookie: another client
    good = {"Cookie": f"{COOKIE_NAME}={session_cookie(db, admin_actor)}"}
    ok = client.get(url, headers=good)
    assert ok.status_code == 200 and ok.headers["cache-control"].startswith("no-store")
    for cookie in (session_cookie(db, admin_actor, end=True),  # signed out
                   session_cookie(db, member_actor),  # not an admin
                   "garbage"):
        assert client.get(url, headers={"Cookie": f"{COOKIE_NAME}={cookie}"}).status_code == 403
    for other in ({"Sec-Fetch-Site": "same-site"}, {"Sec-Fetch-Site": "cross-site"},
                  {"Origin": "http://testserver:8600"}):
        assert client.get(url, headers={**good, **other}).status_code == 403
    assert client.get(url, headers={**good, "Sec-Fetch-Site": "same-origin"}).status_code == 200
