"""A message shown once, after a change and the rerun that redraws the page with fresh data."""

from __future__ import annotations

from typing import Literal

import streamlit as st

from lib.ui.text import inert

Kind = Literal["success", "info", "warning", "error"]
_KEY = "gk_flash"  # {page: (kind, message, where)}


def remember_flash(page: str, message: str, kind: Kind = "success", where: str = "top") -> None:
    """Keep `message` for the next run of `page` (shown at `where` on it): plain text, shown
    as typed, or Markdown made by lib.ui.text.md()."""
    st.session_state.setdefault(_KEY, {})[page] = (kind, message, where)


def show_flash(page: str, where: str = "top") -> None:
    """Show (once) the message kept for `page` at `where`, if any."""
    pending = st.session_state.get(_KEY, {})
    kind, message, shown_at = pending.get(page, (None, None, None))
    if message and shown_at == where:
        del pending[page]
        getattr(st, kind)(inert(message))
