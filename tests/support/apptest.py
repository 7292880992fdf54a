"""What an AppTest run rendered, as text, for asserting that nothing leaks onto a page."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest


def rendered_text(at: AppTest, *, include_inputs: bool = False) -> str:
    """Every element's protobuf as text: titles, markdown, tables' Arrow bytes, charts' JSON.

    include_inputs adds the current values of text inputs and areas (what a user typed).
    """
    parts: list[str] = []

    def walk(node) -> None:
        proto = getattr(node, "proto", None)
        if proto is not None:
            parts.append(str(proto))
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at._tree)
    if include_inputs:
        parts += [str(w.value) for w in at.text_input] + [str(w.value) for w in at.text_area]
    return "\n".join(parts)


def button(at: AppTest, label_start: str):
    """The first button whose label starts with `label_start`."""
    return next(b for b in at.button if b.label.startswith(label_start))


def current_editor_key(at: AppTest) -> str:
    """The widget key of the Keys table's editor in this run (it changes after each save)."""
    # AppTest's session_state has no .get()
    nonce = at.session_state["keys_nonce"] if "keys_nonce" in at.session_state else 0  # noqa: SIM401
    return f"keys_editor_{nonce}"
