"""Every page, run directly and through app.py's navigation: an anonymous or non-admin session
stops at the guard and renders nothing of the seeded data; an admin sees the page.

Pages are found by globbing pages/ and by reading the st.Page(...) paths in app.py, so a page
added later is covered without touching this file.
"""

from __future__ import annotations

import ast
import re
import uuid

import pytest
from sqlalchemy import text
from streamlit.testing.v1 import AppTest

from db.engine import REPO_ROOT
from db.session import Actor, session_scope
from lib.keys.writes import add_key
from lib.runtime import build_runtime
from tests.support.apptest import rendered_text as rendered
from tests.support.apptest import sign_in_as
from tests.support.databases import make_user
from tests.support.keys import fake_key

pytestmark = pytest.mark.one_server

PAGE_FILES = sorted(p.relative_to(REPO_ROOT).as_posix() for p in (REPO_ROOT / "pages").glob("*.py"))
APP_PAGES = sorted(set(re.findall(r"""st\.Page\(\s*["'](pages/[^"']+\.py)["']""",
                                  (REPO_ROOT / "dashboard.py").read_text())))
ADMIN_EMAIL = "admin@example.com"
TIMEOUT = 60


def first_statement(path) -> ast.stmt:
    """The first statement after the docstring and the guard's own import."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue
        if isinstance(node, ast.ImportFrom) and node.module in ("__future__", "lib.ui.guard"):
            continue
        return node
    raise AssertionError(f"{path} is empty")


def test_every_page_file_is_in_the_navigation_and_starts_with_the_guard():
    assert PAGE_FILES and set(APP_PAGES) == set(PAGE_FILES)
    for page in PAGE_FILES:
        assert ast.unparse(first_statement(REPO_ROOT / page)) == "ctx = require_admin()", page


@pytest.fixture
def seeded(db):
    """A key (name, masked hint), its audit row and a usage count: things that must not leak."""
    runtime = build_runtime()
    admin = make_user(db, ADMIN_EMAIL, admin=True)
    member = make_user(db, "member@example.com", admin=False)
    name = f"secret-project-{uuid.uuid4().hex[:8]}"
    api_key = fake_key()
    with session_scope(Actor.service("cli", admin.user_id, ADMIN_EMAIL),
                       engine=runtime.engine) as session:
        key = add_key(session, runtime.master_key, name=name, api_key=api_key)
        hint = key.masked_hint
        session.execute(text(
            "INSERT INTO gemini_key_usage_stats (key_id, date, request_count, success_count) "
            "VALUES (:k, current_date, 987654, 876543)"), {"k": key.id})
    return {"admin": admin, "member": member, "leaks": [name, hint, api_key, api_key[-8:],
                                                        "987654", "876543", "key_added"]}


def signed_in(at: AppTest, actor: Actor | None) -> AppTest:
    if actor is not None:
        sign_in_as(at, actor)
    return at


def run_page(page: str, actor: Actor | None, *, via_app: bool) -> AppTest:
    if via_app:
        at = signed_in(AppTest.from_file("../../dashboard.py", default_timeout=TIMEOUT), actor)
        at.switch_page(page)
    else:
        at = signed_in(AppTest.from_file(f"../../{page}", default_timeout=TIMEOUT), actor)
    return at.run()


def assert_nothing_leaked(at: AppTest, seeded, *also: str) -> None:
    assert not at.exception, at.exception
    page = rendered(at)
    for secret in [*seeded["leaks"], *also]:
        assert secret not in page
    # No page content at all: no numbers, charts or tables of any page.
    assert not at.metric and not at.get("plotly_chart") and not at.dataframe


def assert_sign_in_form_only(at: AppTest) -> None:
    assert [t.key for t in at.text_input] == ["gk_sign_in_email", "gk_sign_in_password"]
    assert [t.value for t in at.title] == ["Gemini Key Manager"]


VIA = [pytest.param(False, id="direct"), pytest.param(True, id="via-app")]


@pytest.mark.parametrize("via_app", VIA)
@pytest.mark.parametrize("page", PAGE_FILES)
def test_anonymous_gets_the_sign_in_form_and_nothing_else(seeded, page, via_app):
    at = run_page(page, None, via_app=via_app)
    assert_nothing_leaked(at, seeded, ADMIN_EMAIL, "member@example.com")
    assert_sign_in_form_only(at)


@pytest.mark.parametrize("via_app", VIA)
@pytest.mark.parametrize("page", PAGE_FILES)
def test_non_admin_gets_no_access_and_nothing_else(seeded, page, via_app):
    at = run_page(page, seeded["member"], via_app=via_app)
    assert_nothing_leaked(at, seeded, ADMIN_EMAIL)
    assert [t.value for t in at.title] == ["No access"]
    assert "ask one of its admins" in rendered(at).lower()
    assert [b.label for b in at.button] == ["Sign out"]


@pytest.mark.parametrize("via_app", VIA)
@pytest.mark.parametrize("page", PAGE_FILES)
def test_admin_sees_the_page(seeded, page, via_app):
    at = run_page(page, seeded["admin"], via_app=via_app)
    assert not at.exception, at.exception
    titles = [t.value for t in at.title]
    assert titles and "No access" not in titles and "Gemini Key Manager" not in titles
    assert not [t for t in at.text_input if t.key and t.key.startswith("gk_sign_in")]
    assert not [b for b in at.button if b.key == "gk_sign_out_no_access"]


def test_admin_sees_the_seeded_key_on_the_keys_page(seeded):
    at = run_page("pages/keys.py", seeded["admin"], via_app=False)
    assert seeded["leaks"][0] in rendered(at)


@pytest.mark.parametrize(("page", "visible"), [("pages/keys.py", "key name"),
                                               ("pages/admins.py", "member@example.com")])
def test_admin_revoked_mid_session_sees_nothing_on_the_next_rerun(db, seeded, page, visible):
    visible = seeded["leaks"][0] if visible == "key name" else visible
    admin = seeded["admin"]
    other = make_user(db, "second@example.com", admin=True)
    at = run_page(page, admin, via_app=True)
    assert visible in rendered(at)

    with session_scope(Actor.service("cli", other.user_id, other.email),
                       engine=db.engine) as session:
        session.execute(text("UPDATE user_profiles SET is_admin = false WHERE user_id = :u"),
                        {"u": admin.user_id})
    at.run()
    assert_nothing_leaked(at, seeded, visible)
    assert [t.value for t in at.title] == ["No access"]


def test_rls_alone_hides_everything_from_a_revoked_admin(db, seeded):
    """Even if a page skipped the guard, the database returns nothing to a revoked admin."""
    from lib.ui.identity import AdminContext

    admin = seeded["admin"]
    ctx = AdminContext(admin, build_runtime())
    with ctx.session() as session:
        assert session.scalar(text("SELECT count(*) FROM gemini_api_keys")) == 1
    with session_scope(Actor.service("cli"), engine=db.engine) as session:
        session.execute(text("UPDATE user_profiles SET is_admin = false WHERE user_id = :u"),
                        {"u": admin.user_id})
    with ctx.session() as session:
        counts = [session.scalar(text(f"SELECT count(*) FROM {table}")) for table in
                  ("gemini_api_keys", "gemini_key_audit_log", "gemini_key_usage_stats")]
    assert counts == [0, 0, 0]

