"""Redaction, the second line of defence: lib.redact and every log record (lib.logging_setup)."""

from __future__ import annotations

import io
import logging
import sys

import pytest

from lib.logging_setup import RedactingFilter, configure_logging
from lib.redact import redact
from tests.support.keys import fake_key


@pytest.fixture
def captured():
    """A handler added AFTER configure_logging, as Streamlit or a host app would add one."""
    configure_logging("DEBUG")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    yield stream
    root.removeHandler(handler)


def log_in_message(log: logging.Logger, key: str) -> None:
    log.warning("calling Gemini with " + key)


def log_in_args(log: logging.Logger, key: str) -> None:
    log.info("key %s failed, header %r", key, {"x-goog-api-key": key})


def log_in_traceback(log: logging.Logger, key: str) -> None:
    try:
        raise ValueError(f"bad key {key}")
    except ValueError:
        log.exception("while checking")


def log_as_bearer(log: logging.Logger, key: str) -> None:
    log.error("Authorization: Bearer %s", key.encode().hex())


def log_in_stack_info(log: logging.Logger, key: str) -> None:
    log.debug("url https://x.test/v1beta/models?key=%s", key, stack_info=True)


@pytest.mark.parametrize("emit", [log_in_message, log_in_args, log_in_traceback,
                                  log_as_bearer, log_in_stack_info])
def test_logs_never_carry_a_key(emit, captured, caplog):
    key = fake_key()
    caplog.set_level(logging.DEBUG)
    emit(logging.getLogger("gemini_keys.test"), key)
    for text in (captured.getvalue(), caplog.text):
        assert "[REDACTED]" in text
        assert key not in text and key.encode().hex() not in text


def test_third_party_loggers_are_redacted_too(captured):
    key = fake_key()
    logging.getLogger("urllib3.connectionpool").warning("GET /models?key=%s", key)
    assert key not in captured.getvalue() and "[REDACTED]" in captured.getvalue()


def test_filter_redacts_records_built_without_the_factory():
    # A library that replaces the log-record factory bypasses the first line; the handler
    # filter still catches it.
    key = fake_key()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    try:
        raise RuntimeError(key)
    except RuntimeError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "got %s", (key,),
                                   sys.exc_info())
    handler.handle(record)
    assert key not in stream.getvalue() and stream.getvalue().count("[REDACTED]") == 2


def test_configure_logging_is_idempotent():
    first = configure_logging()
    configure_logging()
    ours = [h for h in first.handlers if getattr(h, "_gemini_keys_redacting", False)]
    assert len(ours) == 1
    assert first.propagate  # caplog and host handlers still see (redacted) records


@pytest.mark.parametrize(("text", "secret"), [
    ("postgresql://postgres:hunter2hunter2@db.example.com:5432/postgres", "hunter2hunter2"),
    ("postgres://u:p%40ss@host/db", "p%40ss"),
    ("Authorization: bearer abc.def-ghi", "abc.def-ghi"),
])
def test_redact_text_hides_url_passwords_and_bearer_tokens(text, secret):
    assert secret not in redact(text) and "[REDACTED]" in redact(text)


# --- redact (the patterns) ------------------------------------------------------------

def test_redact_full_key():
    key = fake_key()
    assert redact(f"using {key} now") == "using [REDACTED] now"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("partial AIzaSyA1234567890abcdefghij end", "partial [REDACTED] end"),
        ("short AIza1234 stays", "short AIza1234 stays"),
        ("Authorization: Bearer ya29.a0AfH6-x_y~z+/== ok", "Authorization: Bearer [REDACTED] ok"),
        ("GET /models?key=abc123&pageSize=1", "GET /models?key=[REDACTED]&pageSize=1"),
        ("https://x/y?pageSize=1&api_key=s3cr3t", "https://x/y?pageSize=1&api_key=[REDACTED]"),
        ("{'x-goog-api-key': 'hunter2'}", "{'x-goog-api-key': '[REDACTED]'}"),
        ("monkey=banana primary key: id", "monkey=banana primary key: id"),
        ("nothing secret here", "nothing secret here"),
        ("", ""),
    ],
)
def test_redact_cases(text, expected):
    assert redact(text) == expected


def test_redact_several_keys_and_is_idempotent():
    a, b = fake_key(), fake_key()
    once = redact(f"{a},{b} key={a}")
    assert a not in once and b not in once
    assert once == "[REDACTED],[REDACTED] key=[REDACTED]"
    assert redact(once) == once
