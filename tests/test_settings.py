"""Settings are parsed once, typed and bounded, from the environment, then secrets.toml."""

from __future__ import annotations

import logging

import pytest

from lib.errors import ConfigurationError
from lib.settings import DEFAULT_GEMINI_BASE_URL, SETTINGS, Settings


def test_gemini_base_url_defaults_and_drops_the_trailing_slash():
    assert Settings.load({}).gemini_api_base_url == DEFAULT_GEMINI_BASE_URL
    assert Settings.load({"GEMINI_API_BASE_URL": " "}).gemini_api_base_url == (
        DEFAULT_GEMINI_BASE_URL)
    assert Settings.load({"GEMINI_API_BASE_URL": "http://127.0.0.1:8080/"}) \
        .gemini_api_base_url == "http://127.0.0.1:8080"


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://x", "localhost:8080"])
def test_gemini_base_url_must_be_http(url):
    with pytest.raises(ConfigurationError, match="GEMINI_API_BASE_URL must be an http"):
        Settings.load({"GEMINI_API_BASE_URL": url})


@pytest.mark.parametrize(("name", "value", "attribute", "expected"), [
    ("GEMINI_KEYS_BCRYPT_ROUNDS", "5", "bcrypt_rounds", 5),
    ("GEMINI_KEYS_LOG_LEVEL", "debug", "log_level", logging.DEBUG),
    ("GEMINI_KEYS_MIN_USABLE_KEYS", "7", "min_usable_keys", 7),
    ("GEMINI_KEYS_COOKIE_EXPIRY_DAYS", "0.5", "cookie_expiry_days", 0.5),
])
def test_a_setting_in_secrets_toml_is_used_and_the_environment_wins(name, value, attribute,
                                                                     expected):
    # Before settings were parsed once, bcrypt rounds and the log level were read from the
    # environment only: set in secrets.toml, they were silently ignored.
    assert getattr(Settings.load({}, {name: value}), attribute) == expected
    default = Settings.load({})
    assert getattr(Settings.load({name: SETTINGS[attribute].default}, {name: value}),
                   attribute) == getattr(default, attribute)


@pytest.mark.parametrize(("env", "message"), [
    ({"GEMINI_KEYS_BCRYPT_ROUNDS": "3"}, "GEMINI_KEYS_BCRYPT_ROUNDS must be between 4 and 16"),
    ({"GEMINI_KEYS_BCRYPT_ROUNDS": "twelve"}, "GEMINI_KEYS_BCRYPT_ROUNDS must be a whole"),
    ({"GEMINI_KEYS_ENV": "production", "GEMINI_KEYS_BCRYPT_ROUNDS": "8"},
     "from 10 to 16 in production"),
    ({"GEMINI_KEYS_LOG_LEVEL": "LOUD"}, "GEMINI_KEYS_LOG_LEVEL must be one of"),
    ({"GEMINI_KEYS_MIN_USABLE_KEYS": "-1"}, "GEMINI_KEYS_MIN_USABLE_KEYS must be between"),
    ({"GEMINI_KEYS_LOGIN_SLEEP_SECONDS": "nan"}, "GEMINI_KEYS_LOGIN_SLEEP_SECONDS"),
])
def test_bad_values_are_refused_with_the_setting_named(env, message):
    with pytest.raises(ConfigurationError, match=message):
        Settings.load(env)


def test_secret_settings_never_show_in_repr():
    settings = Settings.load({"GEMINI_KEYS_MASTER_KEY": "m" * 44,
                              "GEMINI_KEYS_COOKIE_KEY": "c" * 40,
                              "GEMINI_KEYS_NEW_MASTER_KEY": "n" * 44})
    assert "m" * 44 not in repr(settings) and "c" * 40 not in repr(settings)
    assert "n" * 44 not in repr(settings)


def test_nothing_outside_the_settings_module_reads_the_environment_for_configuration():
    import pathlib

    from lib.settings import REPO_ROOT

    readers = [str(path.relative_to(REPO_ROOT))
               for folder in ("lib", "db", "pages") for path in (REPO_ROOT / folder).rglob("*.py")
               if "os.environ" in path.read_text() or "os.getenv" in path.read_text()]
    assert readers == ["lib/settings.py"], readers
    assert "os.environ" not in pathlib.Path(REPO_ROOT / "app.py").read_text()


def test_database_passwords_never_show_in_repr():
    settings = Settings.load({"DATABASE_URL": "postgresql://gemini_app:app-pw-1234@h/db",
                              "DATABASE_OWNER_URL": "postgresql://postgres:owner-pw-5678@h/db"})
    assert settings.owner_database_url.endswith("@h/db")
    assert "app-pw-1234" not in repr(settings) and "owner-pw-5678" not in repr(settings)


def test_an_owner_url_without_the_app_url_is_refused():
    with pytest.raises(ConfigurationError, match="DATABASE_OWNER_URL is set but DATABASE_URL"):
        Settings.load({"DATABASE_OWNER_URL": "postgresql://postgres:pw@h/db"})


def test_the_server_environment_keeps_paths_and_locale_and_drops_everything_else():
    from lib.settings import server_environment

    env = {"PATH": "/usr/bin", "HOME": "/root", "LC_ALL": "C.UTF-8", "TMPDIR": "/tmp",
           "GEMINI_KEYS_MASTER_KEY": "m" * 44, "DATABASE_URL": "postgresql://u:pw@h/d",
           "PGPASSWORD": "pw", "AWS_SECRET_ACCESS_KEY": "s"}
    assert server_environment(env) == {"PATH": "/usr/bin", "HOME": "/root",
                                       "LC_ALL": "C.UTF-8", "TMPDIR": "/tmp"}
