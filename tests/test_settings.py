"""Settings are parsed once, typed and bounded, from the environment, then secrets.toml."""

from __future__ import annotations

import base64
import logging
import re
import secrets
from pathlib import Path

import pytest

from lib.crypto.master_key import load_master_key
from lib.crypto.sealed import MasterKeyError, generate_master_key_b64
from lib.errors import ConfigurationError
from lib.settings import DEFAULT_GEMINI_BASE_URL, SETTINGS, Settings, check_production_secrets


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
    for entry in ("app.py", "dashboard.py"):
        assert "os.environ" not in pathlib.Path(REPO_ROOT / entry).read_text()


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





def test_production_never_falls_back_to_a_generated_key(tmp_path):
    with pytest.raises(MasterKeyError, match="no master key configured"):
        load_master_key(settings_of(tmp_path, GEMINI_KEYS_ENV="production"))
    assert not (tmp_path / "master.key").exists()


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


def test_every_setting_is_documented_in_the_readme_configuration_table():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    table = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([A-Z_]+)` \|", table, flags=re.MULTILINE))
    assert {setting.env for setting in SETTINGS.values()} - documented == set()
