"""Widgets of the Keys page: filters, the editable table, add-one and add-many forms.

Only masked hints reach the page. The plaintext of a key typed or pasted here lives in its
widget until the form is submitted, then the widget is cleared (add one) or replaced by a
fresh one (add many), and it goes nowhere but lib.keys.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pandas as pd
import streamlit as st

from lib.errors import GeminiKeysError, InvalidInput, refuse_nul
from lib.keys.importing import IMPORT_MAX_BYTES, add_previewed, decode_import, preview_import
from lib.keys.reads import KeyFilter, KeyListRow, count_stored_keys, key_groups, list_keys
from lib.keys.rules import DEFAULT_PRIORITY, PRIORITY_MAX, PRIORITY_MIN
from lib.keys.writes import KeyEdit, add_key, apply_edits, archive_key, edit_key, unarchive_key
from lib.pool.health import check_keys
from lib.ui.flash import Kind, remember_flash, show_flash
from lib.ui.identity import AdminContext
from lib.ui.quotas import quotas_tab
from lib.ui.text import Markdown, inert, md, md_join

PAGE = "keys"  # this page's flash messages
FORM_GENERATION = "keys_nonce"  # bumped after a save: fresh editor and import widgets
PENDING_ARCHIVE = "keys_pending_archive"  # [(id, name)] waiting for confirmation
IMPORT_SIGNATURE = "keys_import_signature"  # what the admin saw in the last preview
NO_GROUP = "(no group)"

# Extension point for actions on the ticked rows, e.g. the key pool's "Check": a button label
# and fn(ctx, rows) -> message. The rows are the table's rows (masked; no key material).
RowAction = Callable[[AdminContext, list[KeyListRow]], str]
MAX_CHECKS_PER_CLICK = 25


def check_ticked(ctx: AdminContext, rows: list[KeyListRow]) -> Markdown:
    """Ask Gemini about each ticked key (audited; invalid keys get deactivated)."""
    rows = rows[:MAX_CHECKS_PER_CLICK]
    results = check_keys([r.id for r in rows], master=ctx.runtime.master_key,
                         actor=ctx.actor, engine=ctx.runtime.engine,
                         base_url=ctx.runtime.settings.gemini_api_base_url)
    lines = [md("- **{}**: {}{}{}", r.name, r.status, f" ({r.action})" if r.action else "",
                f" — {r.message}" if r.message and r.status != "ok" else "")
             for r in results]
    return md_join([md("Checked {} key(s):", len(results)), *lines])


ROW_ACTIONS: dict[str, RowAction] = {"Check": check_ticked}


def form_generation() -> int:
    """Part of the editor's and the forms' widget keys: a new value means fresh widgets."""
    return st.session_state.get(FORM_GENERATION, 0)


def finish_and_rerun(message: str, kind: Kind = "success", where: str = "top") -> None:
    """Remember a message, reset the editor and form widgets, and redraw with fresh data
    (st.rerun: never returns)."""
    remember_flash(PAGE, message, kind, where)
    st.session_state[FORM_GENERATION] = form_generation() + 1
    st.session_state.pop(PENDING_ARCHIVE, None)
    st.session_state.pop(IMPORT_SIGNATURE, None)
    st.rerun()


def show_keys_flash(where: str = "top") -> None:
    show_flash(PAGE, where)


def key_filters(groups: list[str]) -> KeyFilter:
    """Search, group, active and archived filters above the table."""
    search, group, status, shown = st.columns([3, 2, 1, 1])
    text = search.text_input("Search", placeholder="Part of a name or group", key="keys_search")
    group_choice = group.selectbox("Group", ["All groups", NO_GROUP, *groups], key="keys_group")
    status_choice = status.selectbox("Status", ["Any", "Active", "Inactive"], key="keys_status")
    shown_choice = shown.selectbox("Show", ["Current", "Archived", "All"], key="keys_shown")
    try:
        refuse_nul(text, "search text")
    except InvalidInput as error:
        st.error(inert(error))
        text = ""
    return KeyFilter(
        search=text,
        group=None if group_choice == "All groups" else ("" if group_choice == NO_GROUP
                                                         else group_choice),
        active={"Any": None, "Active": True, "Inactive": False}[status_choice],
        archived={"Current": False, "Archived": True, "All": None}[shown_choice],
    )


def table_frame(rows: list[KeyListRow]) -> pd.DataFrame:
    """The editor's data: one row per key, indexed by id, masked only."""
    frame = pd.DataFrame({
        "select": [False] * len(rows),
        "name": [r.name for r in rows],
        "key": [r.masked_hint for r in rows],
        "type": [r.kind or "" for r in rows],
        "group": [r.group_label or "" for r in rows],
        "active": [bool(r.is_active) for r in rows],
        "priority": [int(r.priority or DEFAULT_PRIORITY) for r in rows],
        "status": [r.status_label() for r in rows],
        "uses": [int(r.usage_count or 0) for r in rows],
        "failures": [int(r.failure_count or 0) for r in rows],
        "last used": [r.last_used for r in rows],
        "created by": [r.created_by_email or "CLI" for r in rows],
        "created at": [r.created_at for r in rows],
    }, index=[str(r.id) for r in rows])
    return frame


COLUMN_CONFIG = {
    "select": st.column_config.CheckboxColumn("✓", help="Tick rows to archive them"),
    "key": st.column_config.TextColumn("key", help="Masked: the full key is never shown"),
    "type": st.column_config.TextColumn(
        "type", help="authorization (AQ.…, AI Studio's default since May 2026) or standard "
        "(AIza…, works while it carries API restrictions)"),
    "active": st.column_config.CheckboxColumn("active", help="The pool may use the key"),
    "priority": st.column_config.NumberColumn(
        "priority", min_value=PRIORITY_MIN, max_value=PRIORITY_MAX, step=1, format="%d",
        help=md("{}–{}; higher is preferred", PRIORITY_MIN, PRIORITY_MAX)),
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


def keys_table(ctx: AdminContext, rows: list[KeyListRow]) -> None:
    """The editable table, "Save changes", and the actions on ticked rows."""
    original = table_frame(rows)
    edited = st.data_editor(
        original, key=f"keys_editor_{form_generation()}", hide_index=True,
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
            st.error(inert(error))
        else:
            finish_and_rerun(summary.message(), "warning" if summary.conflicts else "success")
    if archive.button(f"Archive ticked ({len(ticked)})", disabled=not ticked,
                      key="keys_archive"):
        st.session_state[PENDING_ARCHIVE] = [(str(r.id), r.name) for r in ticked]
    if unarchive.button(f"Unarchive ticked ({len(ticked)})", key="keys_unarchive",
                        disabled=not any(r.archived_at for r in ticked)):
        with ctx.session() as session:
            for row in ticked:
                unarchive_key(session, row.id)
        finish_and_rerun(f"Unarchived {len(ticked)} key(s).")
    for column, (label, action) in zip(extra, ROW_ACTIONS.items(), strict=True):
        if column.button(f"{label} ({len(ticked)})", disabled=not ticked, key=f"keys_{label}"):
            finish_and_rerun(action(ctx, ticked), "info")
    confirm_archive(ctx)


def confirm_archive(ctx: AdminContext) -> None:
    """Second step of archiving: name the keys and ask again."""
    pending = st.session_state.get(PENDING_ARCHIVE)
    if not pending:
        return
    names = ", ".join(name for _, name in pending)
    st.warning(md("Archive {} key(s): {}? Archived keys leave this list and are never picked "
                  "by the pool; you can unarchive them later.", len(pending), names))
    yes, no = st.columns(2)
    if yes.button("Yes, archive", type="primary", key="keys_archive_yes"):
        with ctx.session() as session:
            for key_id, _ in pending:
                archive_key(session, key_id)
        finish_and_rerun(f"Archived {len(pending)} key(s): {names}.")
    if no.button("Cancel", key="keys_archive_no"):
        st.session_state.pop(PENDING_ARCHIVE, None)
        st.rerun()


def add_one_form(ctx: AdminContext, groups: list[str]) -> None:
    show_keys_flash("add_one")
    with st.form("keys_add_one", clear_on_submit=True):
        name = st.text_input("Name", max_chars=100, placeholder="project-a-main",
                             key=f"keys_add_name_{form_generation()}")
        api_key = st.text_input("API key", type="password", placeholder="AQ.… or AIza…",
                                key=f"keys_add_key_{form_generation()}")
        left, right = st.columns(2)
        priority = left.number_input("Priority (higher is preferred)", PRIORITY_MIN,
                                     PRIORITY_MAX, DEFAULT_PRIORITY, step=1,
                                     key=f"keys_add_priority_{form_generation()}")
        group = right.text_input("Group (Google Cloud project)", max_chars=100,
                                 key=f"keys_add_group_{form_generation()}",
                                 help=md("Keys of one project share its quotas. {}",
                                         f"In use: {', '.join(groups[:10])}" if groups else ""))
        if not st.form_submit_button("Add key", type="primary"):
            return
    try:
        with ctx.session() as session:
            row = add_key(session, ctx.runtime.master_key, name=name, api_key=api_key,
                          priority=int(priority), group_label=group)
            message = f"Added {row.name} ({row.masked_hint})."
    except GeminiKeysError as error:
        # A fresh form, so the refused text does not linger in the widget on the server.
        finish_and_rerun(f"Not added: {error}", "error", where="add_one")
    else:
        finish_and_rerun(message)


def add_many_form(ctx: AdminContext) -> None:
    st.caption("Paste one `name,key` per line, or just one key per line (it is then named "
               "key-<8 characters of its fingerprint>). **Preview first**: the preview lists "
               "every line with what will be added and what is refused and why. Then only the "
               "lines marked *will be added* are added; refused lines are skipped.")
    with st.form("keys_add_many"):
        text = st.text_area("Keys", height=150, key=f"keys_import_text_{form_generation()}",
                            placeholder="project-a-main,AQ.…\nproject-b-main,AIza…")
        upload = st.file_uploader("…or upload a .txt or .csv file", type=["txt", "csv"],
                                  key=f"keys_import_file_{form_generation()}",
                                  max_upload_size=max(1, IMPORT_MAX_BYTES // 2**20))
        left, right = st.columns(2)
        priority = left.number_input("Priority for all", PRIORITY_MIN, PRIORITY_MAX,
                                     DEFAULT_PRIORITY, step=1, key="keys_import_priority")
        group = right.text_input("Group for all", max_chars=100, key="keys_import_group")
        preview_clicked = st.form_submit_button("Preview")
        add_clicked = st.form_submit_button("Add the keys marked 'will be added'",
                                            type="primary")
    if not (preview_clicked or add_clicked):
        return
    try:
        content = decode_import(upload.getvalue(), "The uploaded file") if upload else text
        with ctx.session() as session:
            preview = preview_import(session, ctx.runtime.master_key, content,
                                     priority=int(priority), group_label=group)
            confirmed = add_clicked and (st.session_state.get(IMPORT_SIGNATURE)
                                         == preview.signature())
            if confirmed:
                result = add_previewed(session, ctx.runtime.master_key, preview,
                                       skip_refused=True)
    except GeminiKeysError as error:
        st.error(inert(error))
        return
    if confirmed:
        skipped = f"; skipped {len(result.refused)} refused line(s)" if result.refused else ""
        finish_and_rerun(f"Added {len(result.added)} key(s){skipped}.")
    if add_clicked:
        st.warning("Check the preview below, then press Add again.")
    st.session_state[IMPORT_SIGNATURE] = preview.signature()
    st.markdown(md("**Preview:** {} will be added, {} refused.", len(preview.to_add),
                   len(preview.refused)))
    st.dataframe(pd.DataFrame(preview.rows()), hide_index=True)


def edit_one_form(ctx: AdminContext, rows: list[KeyListRow]) -> None:
    """Rename, regroup, switch on/off and reprioritise one key (each change audited)."""
    if not rows:
        st.caption("No key to edit with these filters.")
        return
    by_label = {f"{r.name} ({r.masked_hint})": r for r in rows}
    label = st.selectbox("Key", list(by_label), key="keys_edit_choice")
    row = by_label[label]
    with st.form(f"keys_edit_{row.id}_{form_generation()}"):
        name = st.text_input("Name", row.name, max_chars=100)
        group = st.text_input("Group (Google Cloud project)", row.group_label or "",
                              max_chars=100)
        left, right = st.columns(2)
        active = left.toggle("Active (the pool may use it)", bool(row.is_active))
        priority = right.number_input("Priority (higher is preferred)", PRIORITY_MIN,
                                      PRIORITY_MAX, int(row.priority or DEFAULT_PRIORITY),
                                      step=1)
        if not st.form_submit_button("Save key", type="primary"):
            return
    try:
        with ctx.session() as session:
            changed = edit_key(session, row.id, name=name, group_label=group,
                               active=active, priority=int(priority))
    except GeminiKeysError as error:
        st.error(inert(f"Not saved: {error}"))
        return
    # Shown at the top: the rerun opens the first tab again.
    if changed:
        finish_and_rerun(f"Saved {name.strip()}: changed {', '.join(changed)}.")
    else:
        finish_and_rerun("Nothing to save: no field changed.", "info")


def keys_page(ctx: AdminContext) -> None:
    """The Keys page below its title: flash, empty state or filtered table, and the tabs."""
    show_keys_flash()
    with ctx.session() as session:
        total = count_stored_keys(session)
        groups = key_groups(session)
    if total == 0:
        st.info("No keys yet. Add your first Gemini API key below (**Add one**), or paste "
                "many at once (**Add many**). Get keys at https://aistudio.google.com/apikey; "
                "keys of one Google Cloud project share its quotas, so give them that "
                "project as their group.", icon=":material/key:")
    rows: list[KeyListRow] = []
    if total:
        flt = key_filters(groups)
        with ctx.session() as session:
            rows = list_keys(session, flt, master=ctx.runtime.master_key)
        st.caption(md("{} of {} key(s) shown. Tick **active** or change **priority** in as "
                      "many rows as you like, then **Save changes** once.", f"{len(rows):,}",
                      f"{total:,}"))
        if rows:
            keys_table(ctx, rows)
        else:
            st.info("No key matches these filters.")
    add_one, add_many, edit_one, quotas = st.tabs(["Add one", "Add many", "Edit one", "Quotas"])
    with add_one:
        add_one_form(ctx, groups)
    with add_many:
        add_many_form(ctx)
    with edit_one:
        edit_one_form(ctx, rows)
    with quotas:
        quotas_tab(ctx, finish_and_rerun)
