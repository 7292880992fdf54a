"""User text shown as text: the one place that escapes it for Streamlit and Plotly.

Streamlit renders Markdown in almost every element that shows text (st.markdown, st.caption,
st.write, alerts, st.table cells, help tooltips, labels): links, images, emphasis, LaTeX,
`:red[...]` colour directives, `:material/...:` icons, emoji shortcodes, bare URLs and email
addresses that turn into links. A key name, group, email, Gemini error message or audit detail
must show as the characters it holds, so every one of them passes through here:

    st.error(inert(message))                          plain text, escaped whole
    st.markdown(md("**{}** by {}", action, email))    our template, the values escaped

A value already made by md() or inert() is not escaped twice. Table cells of st.dataframe and
st.data_editor, selectbox options and input values are shown literally by Streamlit and need
nothing. Plotly labels understand a little HTML (<a href>, <b>, <br>): plotly_text() for those.
"""

from __future__ import annotations

import html
import re
import string
from collections.abc import Iterable
from typing import Any

# CommonMark lets a backslash escape any ASCII punctuation character, and the escaped
# character is then plain text: no link, emphasis, directive, math, autolink or entity can
# start from it. Escaping all of them (not a hand-picked few) also covers Streamlit's
# extensions (`:color[...]`, `$...$`, `:shortcode:`) and GitHub's autolinks (the `.` and
# `@` of `www.x.com`, `ada@x.com`), whose syntax we do not have to predict.
_ESCAPED = {ord(c): "\\" + c for c in string.punctuation}
# Line breaks would let a value end the list item or paragraph it sits in.
_ESCAPED.update({ord("\n"): " ", ord("\r"): " ", ord("\t"): " ", ord("\u2028"): " ",
                 ord("\u2029"): " "})
# Two rewrites run on the text after Markdown is parsed, so escapes cannot stop them: GitHub's
# autolinks (`https://…`, `www.…`, `ada@example.com` become links) and Streamlit's typography
# (` -> ` becomes an arrow, ` -- ` a dash). An invisible WORD JOINER (U+2060) where such a
# pattern would match breaks it; the text reads (and is searched) the same.
JOINER = "\u2060"
_AUTOLINK_OR_TYPOGRAPHY = re.compile(r"(?<=@)|(?<=www)(?=\.)|(?<=:)(?=//)|(?<=[-<>=~])(?=[-<>=~])",
                                     re.IGNORECASE)


class Markdown(str):
    """Text that is safe to hand to Streamlit as Markdown: our own markup, user values
    escaped."""

    __slots__ = ()


def inert(value: Any) -> Markdown:
    """`value` as Markdown that renders as exactly its characters (None: empty)."""
    if isinstance(value, Markdown):
        return value
    text = "" if value is None else str(value)
    return Markdown(_AUTOLINK_OR_TYPOGRAPHY.sub(JOINER, text).translate(_ESCAPED))


def md(template: str, *values: Any, **named: Any) -> Markdown:
    """Our Markdown `template` (str.format syntax) with every value escaped by inert()."""
    return Markdown(template.format(*(inert(v) for v in values),
                                    **{k: inert(v) for k, v in named.items()}))


def md_join(parts: Iterable[Any], separator: str = "\n") -> Markdown:
    """Markdown parts (md() results, or values to escape) joined by `separator`."""
    return Markdown(separator.join(inert(part) for part in parts))


def plotly_text(value: Any) -> str:
    """`value` for a Plotly label or hover text: HTML-escaped, so `<a href>` is text."""
    return html.escape("" if value is None else str(value), quote=False)
