"""One configured logger ("gemini_keys"), with lib.redact applied to every log record.

Redaction runs twice over: a log-record factory redacts every record when it is created,
whichever logger or handler it goes to later (pytest's caplog, Streamlit's, a handler added
after start-up), and RedactingFilter sits on our handler and on the root handlers in case
another library replaces the record factory.
"""

from __future__ import annotations

import logging
import sys
import traceback
from typing import Any

from lib.redact import redact

LOGGER_NAME = "gemini_keys"
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_MARK = "_gemini_keys_redacting"



def redact_record(record: logging.LogRecord) -> logging.LogRecord:
    """Fold args into the message, redact it, and pre-render a redacted traceback."""
    if getattr(record, _MARK, False):
        return record
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - a bad format string must not hide the record
        message = f"{record.msg!r} % {record.args!r}"
    record.msg, record.args = redact(message), None
    if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
        # Formatters use exc_text when it is set, so the raw exception text never renders.
        record.exc_text = redact("".join(
            traceback.format_exception(*record.exc_info)).rstrip("\n"))
    elif record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)
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


def configure_logging(level: int | None = None) -> logging.Logger:
    """Idempotent: the "gemini_keys" logger with one stderr handler, redaction everywhere.

    level: Settings.log_level (GEMINI_KEYS_LOG_LEVEL); None leaves the level as it is (INFO
    until a runtime sets it). Records still propagate to the root logger (so pytest's caplog
    and any host logging see them, redacted).
    """
    _install_record_factory()
    logger = logging.getLogger(LOGGER_NAME)
    if level is not None:
        logger.setLevel(level)
    elif logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)
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
