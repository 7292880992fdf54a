"""Widgets of the Keys page: filters, the editable table, add-one and add-many forms.

Only masked hints reach the page. The plaintext of a key typed or pasted here lives in its
widget until the form is submitted, then the widget is cleared (add one) or replaced by a
fresh one (add many), and it goes nowhere but lib.keys / lib.key_import.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pandas as pd
import streamlit as st

from lib.errors import GeminiKeysError
from lib.key_import import import_keys, preview_import
from lib.key_list import KeyEdit, KeyFilter, apply_edits
from lib.keys import (
    DEFAULT_PRIORITY,
    PRIORITY_MAX,
    PRIORITY_MIN,
    add_key,
    archive_key,
    edit_key,
    unarchive_key,
)
from lib.ui.guard import AdminContext

FLASH = "keys_flash"  # (kind, message) shown once after a change and a rerun
NONCE = "keys_nonce"  # bumped after a save: fresh editor and import widgets
PENDING_ARCHIVE = "keys_pending_archive"  # [(id, name)] waiting for confirmation
IMPORT_SIGNATURE = "keys_import_signature"  # what the admin saw in the last preview
NO_GROUP = "(no group)"

# Extension point for actions on the ticked rows, e.g. the key pool's "Check": a button label
# and fn(ctx, rows) -> message. The rows are the table's dicts (masked; no key material).
RowAction = Callable[[AdminContext, list[dict[str, Any]]], str]
MAX_CHECKS_PER_CLICK = 25


def check_ticked(ctx: AdminContext, rows: list[dict[str, Any]]) -> str:
    """Ask Gemini about each ticked key (audited; invalid keys get deactivated)."""
    from lib.health import check_keys

    rows = rows[:MAX_CHECKS_PER_CLICK]
    results = check_keys([r["id"] for r in rows], master=ctx.runtime.master_key,
                         actor=ctx.actor, engine=ctx.runtime.engine,
                         base_url=ctx.runtime.settings.get("GEMINI_API_BASE_URL"))
    lines = [f"- **{r.name}**: {r.status}" + (f" ({r.action})" if r.action else "")
             + (f" — {r.message}" if r.message and r.status != "ok" else "")
             for r in results]
    return f"Checked {len(results)} key(s):\n" + "\n".join(lines)


ROW_ACTIONS: dict[str, RowAction] = {"Check": check_ticked}


def nonce() -> int:
    return st.session_state.get(NONCE, 0)


def done(message: str, kind: str = "success", where: str = "top") -> None:
    """Remember a message, reset the editor and form widgets, and redraw with fresh data."""
    st.session_state[FLASH] = (kind, message, where)
    st.session_state[NONCE] = nonce() + 1
    st.session_state.pop(PENDING_ARCHIVE, None)
    st.session_state.pop(IMPORT_SIGNATURE, None)
    st.rerun()


def show_flash(where: str = "top") -> None:
    kind, message, shown_at = st.session_state.get(FLASH, (None, None, None))
    if message and shown_at == where:
        st.session_state.pop(FLASH)
        getattr(st, kind)(message)


def key_filters(groups: list[str]) -> KeyFilter:
    """Search, group, active and archived filters above the table."""
    search, group, status, shown = st.columns([3, 2, 1, 1])
    text = search.text_input("Search", placeholder="Part of a name or group", key="keys_search")
    group_choice = group.selectbox("Group", ["All groups", NO_GROUP, *groups], key="keys_group")
    status_choice = status.selectbox("Status", ["Any", "Active", "Inactive"], key="keys_status")
    shown_choice = shown.selectbox("Show", ["Current", "Archived", "All"], key="keys_shown")
    return KeyFilter(
        search=text,
        group=None if group_choice == "All groups" else ("" if group_choice == NO_GROUP
                                                         else group_choice),
        active={"Any": None, "Active": True, "Inactive": False}[status_choice],
        archived={"Current": False, "Archived": True, "All": None}[shown_choice],
    )


def _status(row: dict[str, Any]) -> str:
    if row["archived_at"] is not None:
        return "archived"
    if row["disabled_reason"]:
        return f"disabled: {row['disabled_reason']}"
    if row["cooldown_until"] is not None:
        return "cooling down"
    return "active" if row["is_active"] else "off"


def table_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The editor's data: one row per key, indexed by id, masked only."""
    frame = pd.DataFrame({
        "select": [False] * len(rows),
        "name": [r["name"] for r in rows],
        "key": [r["masked_hint"] for r in rows],
        "group": [r["group_label"] or "" for r in rows],
        "active": [bool(r["is_active"]) for r in rows],
        "priority": [int(r["priority"] or DEFAULT_PRIORITY) for r in rows],
        "status": [_status(r) for r in rows],
        "uses": [int(r["usage_count"] or 0) for r in rows],
        "failures": [int(r["failure_count"] or 0) for r in rows],
        "last used": [r["last_used"] for r in rows],
        "created by": [r["created_by_email"] or "CLI" for r in rows],
        "created at": [r["created_at"] for r in rows],
    }, index=[str(r["id"]) for r in rows])
    return frame


COLUMN_CONFIG = {
    "select": st.column_config.CheckboxColumn("✓", help="Tick rows to archive them"),
    "key": st.column_config.TextColumn("key", help="Masked: the full key is never shown"),
    "active": st.column_config.CheckboxColumn("active", help="The pool may use the key"),
    "priority": st.column_config.NumberColumn(
        "priority", min_value=PRIORITY_MIN, max_value=PRIORITY_MAX, step=1, format="%d",
        help=f"{PRIORITY_MIN}–{PRIORITY_MAX}; higher is preferred"),
    "last used": st.column_config.DatetimeColumn("last used (UTC)", format="YYYY-MM-DD HH:mm"),
    "created at": st.column_config.DatetimeColumn("created (UTC)", format="YYYY-MM-DD HH:mm"),
}
EDITABLE = ("select", "active", "priority")


def edits_between(original: pd.DataFrame, edited: pd.DataFrame) -> list[KeyEdit]:
    """The rows whose active or priority differ, with the values the admin started from."""
    after = edited.reindex(original.index)
    changed = ((original["active"].astype(bool) != after["active"].astype(bool))
               | (original["priority"] != after["priority"])).to_numpy()
    result = []
    for key_id in original.index[changed]:
        seen, now = original.loc[key_id], after.loc[key_id]
        priority = now["priority"]  # NaN when the cell was cleared: refused as out of range
        result.append(KeyEdit(uuid.UUID(key_id), bool(seen["active"]), int(seen["priority"]),
                              bool(now["active"]), int(priority) if pd.notna(priority) else 0))
    return result


def keys_table(ctx: AdminContext, rows: list[dict[str, Any]]) -> None:
    """The editable table, "Save changes", and the actions on ticked rows."""
    original = table_frame(rows)
    edited = st.data_editor(
        original, key=f"keys_editor_{nonce()}", hide_index=True,
        column_config=COLUMN_CONFIG, disabled=[c for c in original.columns if c not in EDITABLE])
    edits = edits_between(original, edited)
    ticked = [rows[i] for i, flag in enumerate(edited["select"]) if flag]
    save, archive, unarchive, *extra = st.columns(3 + len(ROW_ACTIONS))
    if save.button(f"Save changes ({len(edits)})", type="primary", disabled=not edits,
                   key="keys_save"):
        try:
            with ctx.session() as session:
                summary = apply_edits(session, edits)
        except GeminiKeysError as error:
            st.error(str(error))
        else:
            done(summary.message(), "warning" if summary.conflicts else "success")
    if archive.button(f"Archive ticked ({len(ticked)})", disabled=not ticked,
                      key="keys_archive"):
        st.session_state[PENDING_ARCHIVE] = [(str(r["id"]), r["name"]) for r in ticked]
    if unarchive.button(f"Unarchive ticked ({len(ticked)})", key="keys_unarchive",
                        disabled=not any(r["archived_at"] for r in ticked)):
        with ctx.session() as session:
            for row in ticked:
                unarchive_key(session, row["id"])
        done(f"Unarchived {len(ticked)} key(s).")
    for column, (label, action) in zip(extra, ROW_ACTIONS.items(), strict=True):
        if column.button(f"{label} ({len(ticked)})", disabled=not ticked, key=f"keys_{label}"):
            done(action(ctx, ticked), "info")
    confirm_archive(ctx)


def confirm_archive(ctx: AdminContext) -> None:
    """Second step of archiving: name the keys and ask again."""
    pending = st.session_state.get(PENDING_ARCHIVE)
    if not pending:
        return
    names = ", ".join(name for _, name in pending)
    st.warning(f"Archive {len(pending)} key(s): {names}? Archived keys leave this list and "
               "are never picked by the pool; you can unarchive them later.")
    yes, no = st.columns(2)
    if yes.button("Yes, archive", type="primary", key="keys_archive_yes"):
        with ctx.session() as session:
            for key_id, _ in pending:
                archive_key(session, key_id)
        done(f"Archived {len(pending)} key(s): {names}.")
    if no.button("Cancel", key="keys_archive_no"):
        st.session_state.pop(PENDING_ARCHIVE, None)
        st.rerun()


def add_one_form(ctx: AdminContext, groups: list[str]) -> None:
    show_flash("add_one")
    with st.form("keys_add_one", clear_on_submit=True):
        name = st.text_input("Name", max_chars=100, placeholder="project-a-main",
                             key=f"keys_add_name_{nonce()}")
        api_key = st.text_input("API key", type="password", placeholder="AIza…",
                                key=f"keys_add_key_{nonce()}")
        left, right = st.columns(2)
        priority = left.number_input("Priority (higher is preferred)", PRIORITY_MIN,
                                     PRIORITY_MAX, DEFAULT_PRIORITY, step=1,
                                     key=f"keys_add_priority_{nonce()}")
        group = right.text_input("Group (Google Cloud project)", max_chars=100,
                                 key=f"keys_add_group_{nonce()}",
                                 help="Keys of one project share its quotas. "
                                 + (f"In use: {', '.join(groups[:10])}" if groups else ""))
        if not st.form_submit_button("Add key", type="primary"):
            return
    try:
        with ctx.session() as session:
            row = add_key(session, ctx.runtime.master_key, name=name, api_key=api_key,
                          priority=int(priority), group_label=group)
            message = f"Added {row.name} ({row.masked_hint})."
    except GeminiKeysError as error:
        # A fresh form, so the refused text does not linger in the widget on the server.
        done(f"Not added: {error}", "error", where="add_one")
    else:
        done(message)


def add_many_form(ctx: AdminContext) -> None:
    st.caption("Paste one `name,key` per line, or just one key per line (it is then named "
               "key-<8 characters of its fingerprint>). **Preview first**: the preview lists "
               "every line with what will be added and what is refused and why. Then only the "
               "lines marked *will be added* are added; refused lines are skipped.")
    with st.form("keys_add_many"):
        text = st.text_area("Keys", height=150, key=f"keys_import_text_{nonce()}",
                            placeholder="project-a-main,AIza…\nproject-b-main,AIza…")
        upload = st.file_uploader("…or upload a .txt or .csv file", type=["txt", "csv"],
                                  key=f"keys_import_file_{nonce()}")
        left, right = st.columns(2)
        priority = left.number_input("Priority for all", PRIORITY_MIN, PRIORITY_MAX,
                                     DEFAULT_PRIORITY, step=1, key="keys_import_priority")
        group = right.text_input("Group for all", max_chars=100, key="keys_import_group")
        preview_clicked = st.form_submit_button("Preview")
        add_clicked = st.form_submit_button("Add the keys marked 'will be added'",
                                            type="primary")
    if not (preview_clicked or add_clicked):
        return
    content = upload.getvalue().decode("utf-8", errors="replace") if upload else text
    try:
        with ctx.session() as session:
            preview = preview_import(session, ctx.runtime.master_key, content,
                                     priority=int(priority), group_label=group)
            confirmed = add_clicked and (st.session_state.get(IMPORT_SIGNATURE)
                                         == preview.signature())
            if confirmed:
                result = import_keys(session, ctx.runtime.master_key, content,
                                     priority=int(priority), group_label=group,
                                     skip_refused=True)
    except GeminiKeysError as error:
        st.error(str(error))
        return
    if confirmed:
        skipped = f"; skipped {len(result.refused)} refused line(s)" if result.refused else ""
        done(f"Added {len(result.added)} key(s){skipped}.")
    if add_clicked:
        st.warning("Check the preview below, then press Add again.")
    st.session_state[IMPORT_SIGNATURE] = preview.signature()
    st.markdown(f"**Preview:** {len(preview.to_add)} will be added, "
                f"{len(preview.refused)} refused.")
    st.dataframe(pd.DataFrame(preview.rows()), hide_index=True)


def edit_one_form(ctx: AdminContext, rows: list[dict[str, Any]]) -> None:
    """Rename, regroup, switch on/off and reprioritise one key (each change audited)."""
    if not rows:
        st.caption("No key to edit with these filters.")
        return
    by_label = {f"{r['name']} ({r['masked_hint']})": r for r in rows}
    label = st.selectbox("Key", list(by_label), key="keys_edit_choice")
    row = by_label[label]
    with st.form(f"keys_edit_{row['id']}_{nonce()}"):
        name = st.text_input("Name", row["name"], max_chars=100)
        group = st.text_input("Group (Google Cloud project)", row["group_label"] or "",
                              max_chars=100)
        left, right = st.columns(2)
        active = left.toggle("Active (the pool may use it)", bool(row["is_active"]))
        priority = right.number_input("Priority (higher is preferred)", PRIORITY_MIN,
                                      PRIORITY_MAX, int(row["priority"] or DEFAULT_PRIORITY),
                                      step=1)
        if not st.form_submit_button("Save key", type="primary"):
            return
    try:
        with ctx.session() as session:
            changed = edit_key(session, row["id"], name=name, group_label=group,
                               active=active, priority=int(priority))
    except GeminiKeysError as error:
        st.error(f"Not saved: {error}")
        return
    # Shown at the top: the rerun opens the first tab again.
    if changed:
        done(f"Saved {name.strip()}: changed {', '.join(changed)}.")
    else:
        done("Nothing to save: no field changed.", "info")
