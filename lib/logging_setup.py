"""One configured logger ("gemini_keys") and redaction as a second line of defence.

The code never logs key material on purpose; this catches the accident (a key inside an
exception message, a URL with key=..., a DATABASE_URL with its password). Redaction runs
twice over: a log-record factory redacts every record when it is created, whichever logger
or handler it goes to later (pytest's caplog, Streamlit's, a handler added after start-up),
and RedactingFilter sits on our handler and on the root handlers in case another library
replaces the record factory.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import traceback
from typing import Any

from lib.gemini import REDACTED, redact

LOGGER_NAME = "gemini_keys"
LEVEL_ENV = "GEMINI_KEYS_LOG_LEVEL"
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# scheme://user:password@host -> scheme://user:[REDACTED]@host (DATABASE_URL and friends).
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-z][a-z0-9+.\-]*://[^:/?#@\s]*:)[^@/\s]+(?=@)",
                           re.IGNORECASE)
_MARK = "_gemini_keys_redacting"


def redact_text(text: str) -> str:
    """Gemini keys, bearer tokens, key=... parameters and URL passwords -> [REDACTED]."""
    return _URL_PASSWORD.sub(lambda m: m.group("head") + REDACTED, redact(text))


def redact_record(record: logging.LogRecord) -> logging.LogRecord:
    """Fold args into the message, redact it, and pre-render a redacted traceback."""
    if getattr(record, _MARK, False):
        return record
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - a bad format string must not hide the record
        message = f"{record.msg!r} % {record.args!r}"
    record.msg, record.args = redact_text(message), None
    if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
        # Formatters use exc_text when it is set, so the raw exception text never renders.
        record.exc_text = redact_text("".join(
            traceback.format_exception(*record.exc_info)).rstrip("\n"))
    elif record.exc_text:
        record.exc_text = redact_text(record.exc_text)
    if record.stack_info:
        record.stack_info = redact_text(record.stack_info)
    setattr(record, _MARK, True)
    return record


class RedactingFilter(logging.Filter):
    """Redacts every record passing through the handler (or logger) it is attached to."""

    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record)
        return True


def _install_record_factory() -> None:
    previous = logging.getLogRecordFactory()
    if getattr(previous, _MARK, False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        return redact_record(previous(*args, **kwargs))

    setattr(factory, _MARK, True)
    logging.setLogRecordFactory(factory)


def _add_filter(handler: logging.Handler) -> None:
    if not any(isinstance(f, RedactingFilter) for f in handler.filters):
        handler.addFilter(RedactingFilter())


def configure_logging(level: str | int | None = None) -> logging.Logger:
    """Idempotent: the "gemini_keys" logger with one stderr handler, redaction everywhere.

    Level: the argument, else GEMINI_KEYS_LOG_LEVEL, else INFO. Records still propagate to
    the root logger (so pytest's caplog and any host logging see them, redacted).
    """
    _install_record_factory()
    logger = logging.getLogger(LOGGER_NAME)
    wanted = level if level is not None else os.environ.get(LEVEL_ENV, "").strip() or "INFO"
    if isinstance(wanted, str):
        wanted = logging.getLevelName(wanted.upper())
        if not isinstance(wanted, int):
            wanted = logging.INFO
    logger.setLevel(wanted)
    ours = [h for h in logger.handlers if getattr(h, _MARK, False)]
    if not ours:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(FORMAT))
        setattr(handler, _MARK, True)
        logger.addHandler(handler)
        ours = [handler]
    if not any(isinstance(f, RedactingFilter) for f in logger.filters):
        logger.addFilter(RedactingFilter())
    for handler in [*ours, *logging.getLogger().handlers]:
        _add_filter(handler)
    return logger
