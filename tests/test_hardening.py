"""Second lines of defence: log redaction, production config refusals, friendly page errors."""

from __future__ import annotations

import base64
import io
import logging
import os
import secrets
import subprocess
import sys

import pytest
from streamlit.testing.v1 import AppTest

from lib.crypto.master_key import load_master_key
from lib.crypto.sealed import MasterKeyError, generate_master_key_b64
from lib.errors import ConfigurationError
from lib.logging_setup import RedactingFilter, configure_logging
from lib.redact import redact
from lib.settings import Settings, check_production_secrets
from tests.support.databases import REPO_ROOT


def fake_key() -> str:
    return "AIza" + secrets.token_urlsafe(27)[:35]


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


# --- configuration refusals ---------------------------------------------------------------

def settings_of(data_dir, **env: str) -> Settings:
    """Settings made only of `env` and the data directory (not this process's environment)."""
    return Settings.load({"GEMINI_KEYS_DATA_DIR": str(data_dir), **env})


GOOD_MASTER = generate_master_key_b64()
GOOD_COOKIE = secrets.token_urlsafe(48)


def production(**overrides: str) -> dict[str, str]:
    env = {"GEMINI_KEYS_ENV": "production", "GEMINI_KEYS_MASTER_KEY": GOOD_MASTER,
           "GEMINI_KEYS_COOKIE_KEY": GOOD_COOKIE,
           "DATABASE_URL": "postgresql://app:Zq8t1Lr0pXw@db.abcd.supabase.co:5432/postgres"}
    env.update(overrides)
    return {k: v for k, v in env.items() if v is not None}


@pytest.mark.parametrize(("overrides", "message"), [
    ({"GEMINI_KEYS_MASTER_KEY": None}, "needs GEMINI_KEYS_MASTER_KEY"),
    ({"GEMINI_KEYS_MASTER_KEY": "<base64 of 32 random bytes>"}, "placeholder"),
    ({"GEMINI_KEYS_MASTER_KEY": "changeme-changeme-changeme-changeme-change="}, "placeholder"),
    ({"GEMINI_KEYS_COOKIE_KEY": None}, "needs GEMINI_KEYS_COOKIE_KEY"),
    ({"GEMINI_KEYS_COOKIE_KEY": "Xy7-short-Q2"}, "too short"),
    ({"GEMINI_KEYS_COOKIE_KEY": "my-super-secret-cookie-key-for-production-2026"},
     "placeholder"),
    ({"GEMINI_KEYS_COOKIE_KEY": "<at least 32 random bytes, base64 - put it here>"},
     "placeholder"),
    ({"GEMINI_KEYS_COOKIE_KEY": "ab" * 32}, "placeholder"),
    ({"GEMINI_KEYS_COOKIE_KEY": GOOD_MASTER}, "must differ"),
    ({"DATABASE_URL": "postgresql://postgres:PASSWORD@db.PROJECT.supabase.co:5432/postgres"},
     "placeholders"),
    ({"DATABASE_OWNER_URL": "postgresql://postgres:PASSWORD@db.PROJECT.supabase.co/postgres"},
     "DATABASE_OWNER_URL still holds"),
])
def test_production_refuses_bad_secrets(overrides, message):
    env = production(**overrides)
    with pytest.raises(ConfigurationError, match=message) as info:
        check_production_secrets(Settings.load(env))
    for name in ("GEMINI_KEYS_MASTER_KEY", "GEMINI_KEYS_COOKIE_KEY"):
        if env.get(name):
            assert env[name] not in str(info.value)


def test_production_accepts_good_secrets():
    check_production_secrets(Settings.load(production()))


def test_development_allows_missing_cookie_and_generated_master_key():
    check_production_secrets(Settings.load({"GEMINI_KEYS_ENV": "development"}))


@pytest.mark.parametrize("value", ["prod", "Production ", "staging", "dev"])
def test_unknown_environment_name_is_refused(value):
    if value.strip().lower() == "production":
        assert Settings.load({"GEMINI_KEYS_ENV": value}).production
        return
    with pytest.raises(ConfigurationError, match="GEMINI_KEYS_ENV must be one of"):
        Settings.load({"GEMINI_KEYS_ENV": value})


@pytest.mark.parametrize("make_key", [
    pytest.param(lambda: base64.b64encode(bytes(range(8)) * 4).decode(), id="patterned"),
    pytest.param(lambda: base64.b64encode(b"\x00" * 31 + b"\x01").decode(), id="near-constant"),
])
def test_production_refuses_patterned_master_key(tmp_path, make_key):
    with pytest.raises(MasterKeyError, match="not random enough"):
        load_master_key(settings_of(tmp_path, GEMINI_KEYS_MASTER_KEY=make_key(),
                                    GEMINI_KEYS_ENV="production"))


def test_production_refuses_the_generated_development_key(tmp_path):
    load_master_key(settings_of(tmp_path))
    dev_text = (tmp_path / "master.key").read_text().strip()
    with pytest.raises(MasterKeyError, match="DEVELOPMENT key") as info:
        load_master_key(settings_of(tmp_path, GEMINI_KEYS_MASTER_KEY=dev_text,
                                    GEMINI_KEYS_ENV="production"))
    assert dev_text not in str(info.value)
    # Development mode still accepts it (that is what the file is for).
    load_master_key(settings_of(tmp_path, GEMINI_KEYS_MASTER_KEY=dev_text))


def test_production_refuses_the_generated_development_cookie_key(tmp_path):
    dev_cookie = secrets.token_urlsafe(48)
    (tmp_path / "cookie.key").write_text(dev_cookie + "\n")
    env = production(GEMINI_KEYS_COOKIE_KEY=dev_cookie, GEMINI_KEYS_DATA_DIR=str(tmp_path))
    with pytest.raises(ConfigurationError, match="DEVELOPMENT key") as info:
        check_production_secrets(Settings.load(env))
    assert dev_cookie not in str(info.value)


def test_streamlit_config_hides_errors_toolbar_and_usage_stats():
    import tomllib

    config = tomllib.loads((REPO_ROOT / ".streamlit" / "config.toml").read_text())
    assert config["client"]["showErrorDetails"] in ("none", False)
    assert config["client"]["toolbarMode"] == "viewer"
    assert config["browser"]["gatherUsageStats"] is False


def test_production_never_falls_back_to_a_generated_key(tmp_path):
    with pytest.raises(MasterKeyError, match="no master key configured"):
        load_master_key(settings_of(tmp_path, GEMINI_KEYS_ENV="production"))
    assert not (tmp_path / "master.key").exists()


@pytest.mark.parametrize("command", [["status"], ["init-db"]])
def test_cli_never_echoes_the_database_password(command, tmp_path):
    password = "Pw" + secrets.token_hex(12)
    env = {**os.environ, "DATABASE_URL": f"postgresql://gk:{password}@127.0.0.1:1/nope",
           "GEMINI_KEYS_DATA_DIR": str(tmp_path), "GEMINI_KEYS_LOG_LEVEL": "DEBUG"}
    result = subprocess.run([sys.executable, "-m", "lib.cli", *command], cwd=REPO_ROOT,
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "error: database error" in result.stderr
    assert password not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_unparseable_database_url_is_not_echoed(tmp_path):
    password = "Pw" + secrets.token_hex(12)
    env = {**os.environ, "DATABASE_URL": f"not a url:{password}",
           "GEMINI_KEYS_DATA_DIR": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "lib.cli", "status"], cwd=REPO_ROOT,
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert password not in result.stdout + result.stderr


# --- friendly page errors -----------------------------------------------------------------

def page_raising(kind: str, detail: str) -> None:
    import streamlit as st

    from lib.errors import InvalidInput
    from lib.ui.errors import friendly_errors

    with friendly_errors("test page"):
        st.title("before")
        if kind == "user":
            raise InvalidInput(f"that name is taken ({detail})")
        if kind == "stop":
            st.stop()
        raise RuntimeError(f"database exploded with {detail}")
    st.write("not reached")


def run_page(kind: str, detail: str) -> AppTest:
    at = AppTest.from_function(page_raising, args=(kind, detail))
    return at.run()


def test_unexpected_error_shows_reference_not_traceback(caplog):
    key = fake_key()
    caplog.set_level(logging.ERROR)
    at = run_page("bug", key)
    assert not at.exception
    [error] = at.error
    assert error.value.startswith("Something went wrong")
    ref = error.value.split("reference ")[1].rstrip(".")
    assert key not in error.value and "database exploded" not in error.value
    assert [m.value for m in at.markdown] == [] and at.title[0].value == "before"
    # The server log has the redacted traceback under the same reference.
    assert f"reference {ref}" in caplog.text and "RuntimeError" in caplog.text
    assert key not in caplog.text


def test_user_error_shows_its_own_message_redacted():
    key = fake_key()
    at = run_page("user", key)
    assert not at.exception
    assert at.error[0].value == "that name is taken ([REDACTED])"


def test_st_stop_passes_through_untouched():
    at = run_page("stop", "")
    assert not at.exception and not at.error
