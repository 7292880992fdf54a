"""Two admins at once: two browser contexts (two sign-ins) on one live app (issue 19).

A and B both have the Keys page open; what A saves while B's page is stale must never be
overwritten unseen by B's save, and B's pending edits must never be dropped silently. The
grid is a canvas (glide-data-grid): cells are reached with the keyboard from a clicked
cell, and read through its accessible grid and the database.
"""

from __future__ import annotations

import secrets
import subprocess
import sys

import pytest
from playwright.sync_api import expect
from sqlalchemy import text

from db.engine import REPO_ROOT
from tests.support.browser import sign_in, wait_for_app
from tests.support.keys import fake_key

pytestmark = [pytest.mark.e2e, pytest.mark.one_server]

ADMIN_A = "e2e-admin-a@example.com"
HEADER, ROW = 35, 35  # glide-data-grid's default header and row heights (px)
COLUMNS = ["select", "name", "key", "type", "group", "active", "priority"]


def cli(live_app, *args: str, stdin: str | None = None) -> str:
    result = subprocess.run([sys.executable, "-m", "lib.cli", *args], cwd=REPO_ROOT,
                            env=live_app.env, input=stdin, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture
def admin_a_password(live_app) -> str:
    password = "e2e a " + secrets.token_urlsafe(12)
    cli(live_app, "create-user", "--email", ADMIN_A, "--admin", "--password-stdin",
        stdin=password + "\n")
    return password


@pytest.fixture
def two_admins(live_app, chromium, admin_a_password):
    """(page A, page B): A signed in as ADMIN_A, B as the seeded admin, each its own context."""
    contexts, pages = [], []
    for email, password in ((ADMIN_A, admin_a_password),
                            (live_app.admin_email, live_app.admin_password)):
        context = chromium.new_context(viewport={"width": 1280, "height": 1000})
        context.set_default_timeout(60_000)
        page = context.new_page()
        page.goto(live_app.url())
        wait_for_app(page)
        sign_in(page, live_app, email, password)
        page.get_by_role("button", name="Sign out").first.wait_for()
        contexts.append(context)
        pages.append(page)
    yield tuple(pages)
    for context in contexts:
        context.close()


def add_keys(live_app, *specs: tuple[str, int]) -> None:
    for name, priority in specs:
        cli(live_app, "add-key", "--name", name, "--priority", str(priority),
            stdin=fake_key() + "\n")


def stored(live_app, name: str) -> tuple[bool, int] | None:
    with live_app.engine.connect() as connection:
        row = connection.execute(text(
            "SELECT is_active, priority FROM gemini_api_keys WHERE name = :n "
            "AND deleted_at IS NULL"), {"n": name}).one_or_none()
    return None if row is None else (row.is_active, row.priority)


def open_keys(page, live_app, search: str) -> None:
    """The Keys page narrowed to this test's keys."""
    page.goto(live_app.url("keys"))
    wait_for_app(page)
    box = page.get_by_role("textbox", name="Search")
    box.fill(search)
    box.press("Enter")
    wait_for_app(page)
    page.locator("[role=gridcell]", has_text=search).first.wait_for(state="attached")


def wait_for_text(page, words: str) -> None:
    """Until the page reads `words` (lib.ui.text's invisible joiners ignored)."""
    page.wait_for_function(
        "w => document.body.innerText.replaceAll('\\u2060', '').includes(w)", arg=words)


def row_of(page, name: str) -> int:
    """The grid row (0-based) showing key `name`, from the grid's accessible cells."""
    page.locator("[role=gridcell]", has_text=name).first.wait_for(state="attached")
    for row in range(page.locator("[id^=glide-cell-1-]").count()):
        if page.locator(f"#glide-cell-1-{row}").inner_text() == name:
            return row
    raise AssertionError(f"{name} is not in the grid")


def selected_cell(page) -> tuple[int, int] | None:
    """(column, row) of the grid's selected cell, from its accessible cells."""
    cell = page.locator("[role=gridcell][aria-selected=true]")
    if not cell.count():
        return None
    column, row = cell.first.get_attribute("id").split("-")[2:4]
    return int(column), int(row)


def go_to_cell(page, name: str, column: str) -> None:
    """Select the cell of `column` in `name`'s row: click its row, then the arrow keys (one
    cell per key press; the accessible cells follow the canvas a moment later)."""
    grid = page.locator("[data-testid=stDataFrame]").first.bounding_box()
    target = (COLUMNS.index(column), row_of(page, name))
    page.mouse.click(grid["x"] + 70, grid["y"] + HEADER + ROW * target[1] + ROW / 2)
    page.wait_for_function("() => document.querySelector("
                           "'[role=gridcell][aria-selected=true]') !== null")
    at = selected_cell(page)
    for _ in range(30):
        if at == target:
            return
        page.keyboard.press("ArrowRight" if at[0] < target[0] else "ArrowLeft"
                            if at[0] > target[0] else "ArrowDown" if at[1] < target[1]
                            else "ArrowUp")
        page.wait_for_function(
            "id => { const c = document.querySelector('[role=gridcell][aria-selected=true]');"
            " return c !== null && c.id !== id; }", arg=f"glide-cell-{at[0]}-{at[1]}")
        at = selected_cell(page)
    raise AssertionError(f"could not select {column} of {name}")


def edit_priority(page, name: str, value: int) -> None:
    """Type `value` into `name`'s priority cell and commit it; wait until the grid shows it
    (an Enter pressed before the overlay editor holds the typed text commits the old one)."""
    go_to_cell(page, name, "priority")
    page.keyboard.press("Enter")
    editor = page.locator("input.gdg-input")
    editor.fill(str(value))
    expect(editor).to_have_value(str(value))
    page.keyboard.press("Enter")
    cell = f"#glide-cell-{COLUMNS.index('priority')}-{row_of(page, name)}"
    expect(page.locator(cell)).to_have_text(str(value))
    wait_for_app(page)


def toggle_active(page, name: str) -> None:
    go_to_cell(page, name, "active")
    page.keyboard.press("Space")
    wait_for_app(page)


def save(page, count: int) -> None:
    page.get_by_role("button", name=f"Save changes ({count})").click()
    wait_for_app(page)


def test_b_saving_over_a_change_it_did_not_see_is_refused_naming_a(live_app, two_admins):
    a, b = two_admins
    add_keys(live_app, ("t1-key", 10))
    open_keys(a, live_app, "t1-")
    open_keys(b, live_app, "t1-")  # B's page shows 10 from here on
    edit_priority(a, "t1-key", 11)
    save(a, 1)
    wait_for_text(a, "Saved 1 key(s): t1-key: priority 10 → 11")
    edit_priority(b, "t1-key", 12)
    save(b, 1)
    wait_for_text(b, f"t1-key: changed by {ADMIN_A} since you loaded the page "
                     "(priority: 10 → 11); your priority 12 was not saved")
    assert stored(live_app, "t1-key") == (True, 11)
    assert b.locator("#glide-cell-6-0").inner_text() == "11"  # B's table shows the current


def test_edits_of_different_fields_by_two_admins_merge(live_app, two_admins):
    a, b = two_admins
    add_keys(live_app, ("t2-key", 10))
    open_keys(a, live_app, "t2-")
    open_keys(b, live_app, "t2-")
    toggle_active(a, "t2-key")
    save(a, 1)
    wait_for_text(a, "Saved 1 key(s): t2-key: active on → off")
    edit_priority(b, "t2-key", 12)  # B's page still shows the key on
    save(b, 1)
    wait_for_text(b, "Saved 1 key(s): t2-key: priority 10 → 12")
    assert stored(live_app, "t2-key") == (False, 12)


def test_a_reorder_by_as_save_keeps_bs_pending_toggle_on_its_key(live_app, two_admins):
    a, b = two_admins
    add_keys(live_app, ("t3-a", 30), ("t3-b", 20), ("t3-c", 10))
    open_keys(a, live_app, "t3-")
    open_keys(b, live_app, "t3-")
    toggle_active(b, "t3-c")  # pending in B's table: t3-c off, in the third row
    edit_priority(a, "t3-c", 50)  # A moves t3-c to the top
    save(a, 1)
    wait_for_text(a, "Saved 1 key(s): t3-c: priority 10 → 50")
    save(b, 1)
    wait_for_text(b, "Saved 1 key(s): t3-c: active on → off")
    assert [stored(live_app, n) for n in ("t3-a", "t3-b", "t3-c")] == [
        (True, 30), (True, 20), (False, 50)]


def open_edit_one(page, name: str) -> None:
    page.get_by_role("tab", name="Edit one").click()
    box = page.locator("[data-testid=stSelectbox]").filter(has_text="Key").first
    box.click()
    page.get_by_role("option", name=f"{name} (").first.click()
    wait_for_app(page)
    # Until the run for the chosen key has replaced the previous key's form.
    page.wait_for_function("() => [...document.querySelectorAll('input[aria-label^=Priority]')]"
                           ".filter(e => e.offsetParent !== null).length === 1")


def test_b_edit_one_submit_after_a_renamed_the_key_saves_to_that_key(live_app, two_admins):
    a, b = two_admins
    add_keys(live_app, ("t4-first", 9), ("t4-edit", 5))
    open_keys(b, live_app, "t4-")
    open_edit_one(b, "t4-edit")
    priority = b.get_by_role("spinbutton", name="Priority (higher is preferred)")
    priority.fill("7")
    priority.press("Tab")  # in the form: nothing is sent until Save key
    # A renames it (A's page opens too; the rename goes through the CLI acting for A).
    open_keys(a, live_app, "t4-")
    cli(live_app, "rename", "t4-edit", "t4-renamed", "--actor", ADMIN_A)
    b.get_by_role("button", name="Save key").click()
    wait_for_text(b, "Saved t4-renamed: changed priority.")
    assert stored(live_app, "t4-renamed") == (True, 7)
    assert stored(live_app, "t4-first") == (True, 9)
