"""A friendly message instead of a stack trace, on every page.

    with friendly_errors():          # app.py wraps navigation.run() in this
        navigation.run()

    @friendly_errors()               # or a page's own body, as a decorator
    def render() -> None: ...

Errors meant for the user (lib.errors.GeminiKeysError) show their own message; anything else
shows "Something went wrong" with a short reference id, and the traceback goes to the server
log (redacted by lib.logging_setup) under that id. Both stop the script. Streamlit's own
control flow (st.stop, st.rerun, st.switch_page) derives from BaseException and passes through.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import streamlit as st

from lib.errors import GeminiKeysError
from lib.redact import redact
from lib.ui.text import inert, md

log = logging.getLogger("gemini_keys.ui")

GENERIC_MESSAGE = ("Something went wrong and this page could not be shown. Please try again; "
                   "if it keeps happening, give your administrator the reference {ref}.")


def new_reference() -> str:
    """Short id that ties the message on screen to the server log line."""
    return secrets.token_hex(4)


@contextmanager
def friendly_errors(where: str = "page") -> Iterator[None]:
    """Show errors as one st.error line (never a traceback) and stop the script."""
    try:
        yield
    except GeminiKeysError as error:
        # These messages are written to be shown; redact anyway as a second line of defence.
        message = redact(str(error))
        log.warning("%s on %s: %s", type(error).__name__, where, message)
        st.error(inert(message))
        st.stop()
    except Exception:
        ref = new_reference()
        log.exception("unhandled error on %s (reference %s)", where, ref)
        st.error(md(GENERIC_MESSAGE, ref=ref), icon="⚠️")
        st.stop()
