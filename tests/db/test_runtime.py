"""Start-up as a newcomer runs it: nothing configured but the database."""

from __future__ import annotations

import stat

import pytest

from lib.errors import GeminiKeysError
from lib.runtime import build_runtime


def test_without_a_master_key_development_generates_one_with_a_warning(db, monkeypatch,
                                                                       tmp_path, caplog):
    monkeypatch.delenv("GEMINI_KEYS_MASTER_KEY")
    runtime = build_runtime()
    assert runtime.dev_master_key is True
    key_file = tmp_path / "data" / "master.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert "DEVELOPMENT master key" in caplog.text
    assert build_runtime().master_key == runtime.master_key  # reused, not regenerated


@pytest.mark.parametrize("value", ["", "   "])
def test_an_empty_master_key_setting_counts_as_unset(db, monkeypatch, value):
    monkeypatch.setenv("GEMINI_KEYS_MASTER_KEY", value)
    assert build_runtime().dev_master_key is True


def test_production_without_a_master_key_refuses_to_start(db, monkeypatch):
    monkeypatch.delenv("GEMINI_KEYS_MASTER_KEY")
    monkeypatch.setenv("GEMINI_KEYS_ENV", "production")
    monkeypatch.setenv("GEMINI_KEYS_BCRYPT_ROUNDS", "10")  # production refuses the tests' 4
    monkeypatch.setenv("GEMINI_KEYS_COOKIE_KEY", "k" * 8 + "Zq3-x9Tw" * 6)
    with pytest.raises(GeminiKeysError, match="GEMINI_KEYS_MASTER_KEY"):
        build_runtime()
