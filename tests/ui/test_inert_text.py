"""User text is inert on every page: hostile key names, groups, emails, Gemini's messages and
audit details reach Streamlit only escaped, wherever it renders Markdown (text, captions,
alerts, flashes, st.table cells, tooltips, labels, the sidebar), and still read literally.

AppTest reports what the page asks Streamlit to render (the Markdown source); the browser test
tests/e2e/test_e2e_security.py checks the rendered page for links and images.
"""

from __future__ import annotations

import ast

import pytest
from streamlit.testing.v1 import AppTest

from db.engine import REPO_ROOT
from lib.runtime import build_runtime
from lib.ui.text import inert, md, plotly_text
from tests.support.apptest import button, current_editor_key, shown, sign_in_as
from tests.support.databases import make_user
from tests.support.hostile import (
    HOSTILE_EMAIL,
    HOSTILE_GROUP,
    HOSTILE_MESSAGE,
    HOSTILE_NAME,
    HOSTILE_TEXTS,
    MARKUP,
    seed_hostile,
)

pytestmark = pytest.mark.one_server
PAGES = sorted(p.stem for p in (REPO_ROOT / "pages").glob("*.py"))
MARKDOWN_FIELDS = {"body", "help", "label"}  # what Streamlit renders as (some) Markdown


@pytest.fixture
def hostile(db, fake):
    runtime = build_runtime()
    return seed_hostile(runtime.engine, runtime.master_key, fake)


def markdown_texts(at: AppTest) -> list[str]:
    """Every string Streamlit will render as Markdown: bodies, help texts, labels, st.table
    cells (st.dataframe cells and selectbox options are shown literally)."""
    found: list[str] = []

    def fields(message) -> None:
        for descriptor, value in message.ListFields():
            if descriptor.type == descriptor.TYPE_MESSAGE:
                for item in (value if descriptor.is_repeated else [value]):
                    fields(item)
            elif descriptor.name in MARKDOWN_FIELDS and isinstance(value, str):
                found.append(value)

    def walk(node) -> None:
        proto = getattr(node, "proto", None)
        if proto is not None and not hasattr(proto, "arrow_data"):
            fields(proto)
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at._tree)
    for table in at.table:
        found += [str(cell) for cell in table.value.to_numpy().ravel()]
    return found


def literal_texts(at: AppTest) -> list[str]:
    """What the page shows literally: st.dataframe cells and selectbox options."""
    cells = [str(c) for frame in at.dataframe for c in frame.value.to_numpy().ravel()]
    return cells + [str(o) for box in at.selectbox for o in box.options]


def assert_inert(at: AppTest, *expected: str) -> None:
    """No Markdown text holds hostile markup; each `expected` text reads literally."""
    assert not at.exception, at.exception
    texts = markdown_texts(at)
    for text in texts:
        for markup in MARKUP:
            assert markup not in text, (markup, text)
    readable = "\n".join([*(shown(t) for t in texts), *literal_texts(at)])
    for value in expected:
        assert value in readable, value


def run_page(page: str, actor, *, via_app: bool = False) -> AppTest:
    script = "../../dashboard.py" if via_app else f"../../pages/{page}.py"
    at = sign_in_as(AppTest.from_file(script, default_timeout=60), actor)
    if via_app:
        at.switch_page(f"pages/{page}.py")
    return at.run()


EXPECTED = {  # what each page shows of the hostile data
    "overview": (HOSTILE_NAME,),  # the "disabled automatically" alert
    "keys": (HOSTILE_NAME, HOSTILE_GROUP),  # table, group tooltip, edit form (and the
    # check's flash, below: HOSTILE_MESSAGE)
    "analytics": (HOSTILE_NAME, HOSTILE_GROUP),
    "audit": (HOSTILE_NAME, HOSTILE_EMAIL, HOSTILE_MESSAGE),  # entry details and its table
    "admins": (HOSTILE_EMAIL,),
    "tokens": (HOSTILE_NAME,),  # the token list
}


@pytest.mark.parametrize("page", PAGES)
def test_every_page_shows_hostile_text_literally(hostile, page):
    at = run_page(page, hostile.admin)
    assert_inert(at, *EXPECTED[page])
    # Plotly renders a little HTML in labels (<b>, <a href>): names reach it HTML-escaped.
    specs = "\n".join(chart.proto.spec for chart in at.get("plotly_chart"))
    assert "<b>h<" not in specs and "\\u003cb\\u003eh" not in specs
    assert ("&lt;b&gt;h&lt;" in specs) == (page == "analytics")  # the heatmap's rows


def test_the_sidebar_shows_a_hostile_email_literally(hostile):
    at = sign_in_as(AppTest.from_file("../../dashboard.py", default_timeout=60),
                    hostile.admin).run()
    assert_inert(at, f"Signed in as {HOSTILE_EMAIL}", HOSTILE_NAME)  # and the Overview


def test_the_pages_cover_every_hostile_text():
    assert set(PAGES) == set(EXPECTED)
    assert {t for texts in EXPECTED.values() for t in texts} == set(HOSTILE_TEXTS)


def test_gemini_messages_in_the_check_flash_are_inert(hostile, fake, monkeypatch):
    monkeypatch.setenv("GEMINI_API_BASE_URL", fake.base_url)
    at = run_page("keys", hostile.admin)
    at.session_state[current_editor_key(at)] = {
        "edited_rows": {"0": {"select": True}}, "added_rows": [], "deleted_rows": []}
    at.run()
    button(at, "Check (1)").click().run()
    assert_inert(at, HOSTILE_NAME, HOSTILE_MESSAGE)
    assert "**" in at.info[0].value  # our own emphasis survives around the escaped name


def test_errors_that_quote_user_text_are_inert(hostile):
    at = run_page("admins", hostile.admin)
    at.text_input(key="gk_new_user_email").input(HOSTILE_EMAIL)
    at.text_input(key="gk_new_user_password").input("another long passphrase")
    at.text_input(key="gk_new_user_repeat").input("another long passphrase")
    at.button(key="FormSubmitter:gk_create_user-Create user").click().run()
    assert "already exists" in shown(at.error[0].value)
    assert_inert(at, HOSTILE_EMAIL)


def test_the_no_access_page_shows_a_hostile_email_literally(db, hostile):
    member = make_user(db, "[m](https://evil.example/m)@example.com", admin=False)
    at = run_page("keys", member, via_app=True)
    assert [t.value for t in at.title] == ["No access"]
    assert_inert(at, "[m](https://evil.example/m)@example.com")
    assert "](https://evil" not in "".join(markdown_texts(at))


def test_the_sign_in_page_keeps_a_hostile_typed_email_inert(db, hostile):
    at = AppTest.from_file("../../dashboard.py", default_timeout=60).run()
    at.text_input(key="gk_sign_in_email").input(HOSTILE_EMAIL)
    at.text_input(key="gk_sign_in_password").input("not the password at all")
    at.button(key="FormSubmitter:gk_sign_in-Sign in").click().run()
    assert_inert(at)
    assert shown(at.error[0].value) == "Email or password is incorrect."


# -- every call site goes through the helper ------------------------------------------------

MARKDOWN_SINKS = {"markdown", "write", "caption", "info", "warning", "error", "success",
                  "toast", "title", "header", "subheader"}
SAFE_CALLS = {"md", "inert", "md_join"}
UI_SOURCES = sorted([*(REPO_ROOT / "lib" / "ui").glob("*.py"), *(REPO_ROOT / "pages").glob("*.py"),
                     REPO_ROOT / "dashboard.py", REPO_ROOT / "app.py"])


def unescaped_text(node) -> bool:
    """Whether `node`, handed to Streamlit as Markdown, could carry user text unescaped."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return False
    if isinstance(node, ast.Name) and node.id.isupper():  # a module constant of our own
        return False
    return not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id in SAFE_CALLS)


def is_sink(call: ast.Call) -> bool:
    func = call.func
    if isinstance(func, ast.Attribute):
        return func.attr in MARKDOWN_SINKS
    # getattr(st, kind)(message): an alert chosen at run time
    return (isinstance(func, ast.Call) and isinstance(func.func, ast.Name)
            and func.func.id == "getattr")


@pytest.mark.parametrize("path", UI_SOURCES, ids=lambda p: p.relative_to(REPO_ROOT).as_posix())
def test_text_reaches_markdown_only_through_lib_ui_text(path):
    """A new st.error(f"... {name}") (or help=f"...") fails here, before any page shows it."""
    offenders = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Call):
            continue
        if is_sink(node) and node.args and unescaped_text(node.args[0]):
            offenders.append(f"line {node.lineno}: {ast.unparse(node)[:80]}")
        offenders += [f"line {node.lineno}: help={ast.unparse(k.value)[:60]}"
                      for k in node.keywords if k.arg == "help" and unescaped_text(k.value)]
    assert not offenders, offenders


# -- the helper itself -----------------------------------------------------------------------

@pytest.mark.parametrize("value", [*HOSTILE_TEXTS, "a\\*b\\", "line one\nline two", "", "ü ✓ 🔑"])
def test_inert_reads_back_as_the_same_characters(value):
    assert shown(inert(value)) == value.replace("\n", " ")
    for markup in MARKUP:
        assert markup not in inert(value)


def test_md_escapes_values_but_keeps_its_template_and_never_escapes_twice():
    once = md("**{}** by {}", HOSTILE_NAME, inert(HOSTILE_EMAIL))
    assert once.startswith("**") and shown(once) == f"**{HOSTILE_NAME}** by {HOSTILE_EMAIL}"
    assert inert(once) is once


def test_plotly_labels_cannot_carry_html():
    assert plotly_text('<a href="https://evil.example">x</a>') == (
        '&lt;a href="https://evil.example"&gt;x&lt;/a&gt;')
