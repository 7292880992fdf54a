"""Keys: the masked table with filters and in-place edits, archive, add one, add many."""

from lib.ui.guard import require_admin

ctx = require_admin()

import streamlit as st  # noqa: E402

from lib.key_list import count_keys, key_groups, list_keys  # noqa: E402
from lib.ui.errors import friendly_errors  # noqa: E402
from lib.ui.keys_widgets import (  # noqa: E402
    add_many_form,
    add_one_form,
    edit_one_form,
    key_filters,
    keys_table,
    show_flash,
)

st.title("Keys")
st.caption("Keys are encrypted before they reach the database and are only ever shown "
           "masked (AIza…k3Q9). Higher priority is preferred by the pool.")
show_flash()

with friendly_errors("keys"):
    with ctx.session() as session:
        total = count_keys(session)
        groups = key_groups(session)

    if total == 0:
        st.info("No keys yet. Add your first Gemini API key below (**Add one**), or paste "
                "many at once (**Add many**). Get keys at https://aistudio.google.com/apikey; "
                "keys of one Google Cloud project share its quotas, so give them that "
                "project as their group.", icon="🔑")
    rows: list = []
    if total:
        flt = key_filters(groups)
        with ctx.session() as session:
            rows = list_keys(session, flt, master=ctx.runtime.master_key)
        st.caption(f"{len(rows):,} of {total:,} key(s) shown. Tick **active** or change "
                   "**priority** in as many rows as you like, then **Save changes** once.")
        if rows:
            keys_table(ctx, rows)
        else:
            st.info("No key matches these filters.")

    add_one, add_many, edit_one = st.tabs(["Add one", "Add many", "Edit one"])
    with add_one:
        add_one_form(ctx, groups)
    with add_many:
        add_many_form(ctx)
    with edit_one:
        edit_one_form(ctx, rows)
