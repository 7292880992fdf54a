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

from lib.concurrency import EditConflict, FieldChange, check_edit
from lib.errors import GeminiKeysError, InvalidInput, refuse_nul
from lib.keys.importing import IMPORT_MAX_BYTES, add_previewed, decode_import, preview_import
from lib.keys.reads import KeyFilter, KeyListRow, count_stored_keys, key_groups, list_keys
from lib.keys.rules import DEFAULT_PRIORITY, PRIORITY_MAX, PRIORITY_MIN
from lib.keys.writes import (
    BulkEditSummary,
    KeyEdit,
    add_key,
    apply_edits,
    edit_key,
    edit_values,
    set_archived_many,
)
from lib.pool.health import check_keys
from lib.ui.flash import Kind, remember_flash, show_flash
from lib.ui.identity import AdminContext
from lib.ui.quotas import quotas_tab
from lib.ui.text import Markdown, inert, md, md_join

PAGE = "keys"  # this page's flash messages
FORM_GENERATION = "keys_nonce"  # bumped after a save: fresh editor and import widgets
PENDING_ARCHIVE = "keys_pending_archive"  # [(id, name)] waiting for confirmation
IMPORT_SIGNATURE = "keys_import_signature"  # what the admin saw in the last preview
GRID_STATE = "keys_grid"  # the table as loaded: row order, last shown rows, seen values
EDIT_SEEN = "keys_edit_seen"  # {key id: edit_values} the Edit one form showed
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


def _pending_cells(editor_key: str) -> dict[int, dict]:
    """The editor's pending cell edits by row position (what the browser sent), or {}."""
    state = st.session_state.get(editor_key)
    rows = state.get("edited_rows", {}) if isinstance(state, dict) else {}
    return {int(position): dict(cells) for position, cells in rows.items() if cells}


def grid_rows(rows: list[KeyListRow], flt: KeyFilter) -> list[KeyListRow]:
    """The rows the editor shows, in a fixed order while edits are pending.

    st.data_editor keeps edits by row position, and its identity includes the row ids in
    order: a re-order by someone else's save would drop (or misplace) pending edits. So while
    any cell is edited or ticked, the order of the table as loaded is kept (with current
    values), a key gone from the view stays as a placeholder, new keys wait; and the values
    each edited cell showed when it was edited are kept as "seen" (GRID_STATE), which the
    save checks (lib.concurrency) so nobody's change is overwritten unseen.
    """
    editor_key = f"keys_editor_{form_generation()}"
    state = st.session_state.get(GRID_STATE)
    pending = _pending_cells(editor_key)
    if state is not None and state["generation"] == form_generation() and pending \
            and state["filter"] != flt:
        remember_flash(PAGE, f"Your {len(pending)} unsaved row edit(s) were discarded because "
                       "the filters changed.", "warning")
        st.session_state[FORM_GENERATION] = form_generation() + 1
        show_keys_flash()
        return grid_rows(rows, flt)
    fresh = {str(r.id): r for r in rows}
    if state is None or state["generation"] != form_generation() or not pending:
        state = {"generation": form_generation(), "filter": flt, "order": list(fresh),
                 "shown": {}, "seen": {}}
    order: list[str] = state["order"]
    shown: dict[str, KeyListRow] = state["shown"]
    # Pin what each newly edited cell showed before the edit (the previous run's render).
    seen: dict[str, dict[str, object]] = {}
    for position, cells in pending.items():
        if position >= len(order):
            continue
        key_id = order[position]
        for column in ("active", "priority"):
            if column in cells:
                before = state["seen"].get(key_id, {}).get(column)
                if before is None and key_id in shown:
                    row = shown[key_id]
                    before = (bool(row.is_active) if column == "active"
                              else int(row.priority or DEFAULT_PRIORITY))
                if before is not None:
                    seen.setdefault(key_id, {})[column] = before
    changed = [f"{fresh[i].name} ({', '.join(differences(shown[i], fresh[i]))})"
               for i in order if i in fresh and i in shown and differences(shown[i], fresh[i])]
    gone = [shown[i].name for i in order if i not in fresh and i in shown]
    added = [i for i in fresh if i not in set(order)]
    if pending and (changed or gone or added):
        lines = []
        if changed:
            lines.append(md("Changed elsewhere since you loaded the table: {}.",
                            "; ".join(changed)))
        if gone:
            lines.append(md("No longer in this view (deleted, archived or changed elsewhere): "
                            "{}.", ", ".join(gone)))
        if added:
            lines.append(md("{} key(s) added or newly matching; they appear after you save "
                            "or reload.", len(added)))
        lines.append(md("Your {} pending row edit(s) are kept, in the order you loaded; on "
                        "save each edited row is checked against what you saw.", len(pending)))
        st.warning(md_join(lines))
        if st.button("Discard my edits and reload", key="keys_reload"):
            finish_and_rerun("Reloaded the table; your unsaved edits were discarded.", "info")
    shown_now = [fresh.get(i) or shown.get(i) for i in order]
    state.update(order=[i for i, r in zip(order, shown_now, strict=True) if r is not None],
                 shown={str(r.id): r for r in shown_now if r is not None}, seen=seen,
                 gone={i for i in order if i not in fresh})
    st.session_state[GRID_STATE] = state
    return [r for r in shown_now if r is not None]


def differences(before: KeyListRow, after: KeyListRow) -> list[str]:
    """'field: before → after' for the editable fields that differ (for the warnings)."""
    return [change.describe() for change in check_edit(
        edit_values(before), edit_values(after), edit_values(before)).notes]


def edits_between(original: pd.DataFrame, edited: pd.DataFrame,
                  seen: dict[str, dict[str, object]] | None = None) -> list[KeyEdit]:
    """The rows whose active or priority differ, with the values the admin started from
    (`seen`, per key id and column, when the page pinned them; else the table's)."""
    after = edited.reindex(original.index)
    changed = ((original["active"].astype(bool) != after["active"].astype(bool))
               | (original["priority"] != after["priority"])).to_numpy()
    result = []
    for key_id in original.index[changed]:
        base, now = original.loc[key_id], after.loc[key_id]
        pinned = (seen or {}).get(key_id, {})
        seen_active = bool(pinned.get("active", base["active"]))
        seen_priority = int(pinned.get("priority", base["priority"]))
        priority = now["priority"]  # NaN when the cell was cleared: refused as out of range
        result.append(KeyEdit(uuid.UUID(key_id), seen_active, seen_priority,
                              bool(now["active"]), int(priority) if pd.notna(priority) else 0))
    return [e for e in result
            if (e.active, e.priority) != (e.seen_active, e.seen_priority)]


def keys_table(ctx: AdminContext, rows: list[KeyListRow]) -> None:
    """The editable table, "Save changes", and the actions on ticked rows."""
    original = table_frame(rows)
    state = st.session_state.get(GRID_STATE) or {}
    for key_id in state.get("gone", ()):
        if key_id in original.index:
            original.loc[key_id, "status"] = "gone from this view"
    edited = st.data_editor(
        original, key=f"keys_editor_{form_generation()}", hide_index=True,
        column_config=COLUMN_CONFIG, disabled=[c for c in original.columns if c not in EDITABLE])
    edits = edits_between(original, edited, state.get("seen"))
    names = {r.id: r.name for r in rows}
    ticked = [rows[i] for i, flag in enumerate(edited["select"]) if flag]
    save, archive, unarchive, *extra = st.columns(3 + len(ROW_ACTIONS))
    if save.button(f"Save changes ({len(edits)})", type="primary", disabled=not edits,
                   key="keys_save"):
        try:
            with ctx.session() as session:
                summary = apply_edits(session, edits, names=names)
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
            report = set_archived_many(session, [r.id for r in ticked], False, names=names)
        finish_and_rerun(archive_message("Unarchived", report),
                         "warning" if report.conflicts else "success")
    for column, (label, action) in zip(extra, ROW_ACTIONS.items(), strict=True):
        if column.button(f"{label} ({len(ticked)})", disabled=not ticked, key=f"keys_{label}"):
            finish_and_rerun(action(ctx, ticked), "info")
    confirm_archive(ctx)


def archive_message(verb: str, report: BulkEditSummary) -> str:
    names = ", ".join(line.split(":")[0] for line in report.changed)
    message = f"{verb} {len(report.changed)} key(s)" + (f": {names}." if names else ".")
    if report.conflicts:
        message += " Not changed: " + "; ".join(c.describe() for c in report.conflicts) + "."
    return message


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
            report = set_archived_many(session, [uuid.UUID(i) for i, _ in pending], True,
                                       names={uuid.UUID(i): n for i, n in pending})
        finish_and_rerun(archive_message("Archived", report),
                         "warning" if report.conflicts else "success")
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
    """Rename, regroup, switch on/off and reprioritise one key (each change audited).

    The key is chosen by id (a rename elsewhere keeps the choice); the form starts from the
    values it showed when opened (EDIT_SEEN), and the save checks each changed field against
    them (lib.concurrency): someone else's change is never overwritten unseen.
    """
    if not rows:
        st.caption("No key to edit with these filters.")
        return
    by_id = {str(r.id): r for r in rows}
    chosen = st.session_state.get("keys_edit_choice")
    seen_all: dict[str, dict] = st.session_state.setdefault(EDIT_SEEN, {})
    if chosen is not None and chosen not in by_id:
        name = seen_all.get(chosen, {}).get("name", "the key you were editing")
        st.warning(md("{} is no longer in this list (deleted, archived or changed elsewhere); "
                      "nothing was saved to it. Choose a key below.", name))
        seen_all.pop(chosen, None)
    key_id = st.selectbox("Key", list(by_id), key="keys_edit_choice",
                          format_func=lambda i: f"{by_id[i].name} ({by_id[i].masked_hint})")
    row = by_id[key_id]
    seen = seen_all.get(key_id)
    if seen is None or seen.get("generation") != form_generation():
        seen = {**edit_values(row), "generation": form_generation()}
        seen_all[key_id] = seen
    moved = differences_from(seen, row)
    if moved:
        st.warning(md("Changed elsewhere since this form was opened: {}. Fields you change "
                      "are checked against what the form showed; fields you leave as they are "
                      "stay as they are now.", ", ".join(moved)))
    suffix = f"{key_id}_{form_generation()}"
    with st.form(f"keys_edit_{suffix}"):
        name = st.text_input("Name", seen["name"], max_chars=100, key=f"keys_edit_name_{suffix}")
        group = st.text_input("Group (Google Cloud project)", seen["group"] or "",
                              max_chars=100, key=f"keys_edit_group_{suffix}")
        left, right = st.columns(2)
        active = left.toggle("Active (the pool may use it)", seen["active"],
                             key=f"keys_edit_active_{suffix}")
        priority = right.number_input("Priority (higher is preferred)", PRIORITY_MIN,
                                      PRIORITY_MAX, int(seen["priority"] or DEFAULT_PRIORITY),
                                      step=1, key=f"keys_edit_priority_{suffix}")
        if not st.form_submit_button("Save key", type="primary"):
            return
    expected = {f: seen[f] for f in ("name", "group", "active", "priority")}
    try:
        with ctx.session() as session:
            result = edit_key(session, row.id, name=name, group_label=group,
                              active=bool(active), priority=int(priority), expected=expected)
    except EditConflict as error:
        finish_and_rerun(str(error), "error")
    except GeminiKeysError as error:
        st.error(inert(f"Not saved: {error}"))
        return
    notes = "".join(f" Note: {n.describe()}." for n in result.notes)
    # Shown at the top: the rerun opens the first tab again.
    if result.changed:
        finish_and_rerun(f"Saved {result.name}: changed {', '.join(result.changed)}.{notes}",
                         "warning" if notes else "success")
    elif notes or asked_for_change(expected, name, group, bool(active), int(priority)):
        finish_and_rerun(f"Nothing to save: {row.name} already had these values.{notes}",
                         "info")
    else:
        finish_and_rerun("Nothing to save: no field changed.", "info")


def differences_from(seen: dict, row: KeyListRow) -> list[str]:
    """'field: seen → now' for the fields of `row` that moved since `seen`."""
    now = edit_values(row)
    return [FieldChange(f, seen[f], now[f]).describe()
            for f in ("name", "group", "active", "priority") if seen.get(f) != now[f]]


def asked_for_change(seen: dict, name: str, group: str, active: bool, priority: int) -> bool:
    """Whether the form's values differ from what it showed (the admin changed a field)."""
    return ((name or "").strip() != seen["name"] or ((group or "").strip() or None)
            != seen["group"] or active != seen["active"] or priority != seen["priority"])


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
            rows = grid_rows(list_keys(session, flt, master=ctx.runtime.master_key), flt)
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
