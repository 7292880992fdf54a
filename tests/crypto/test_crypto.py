"""Tests for lib.crypto and lib.master_key: pure functions, no database."""

from __future__ import annotations

import base64
import logging
import os
import stat
import uuid
from dataclasses import replace
from types import SimpleNamespace

import pytest

from lib.crypto.master_key import load_master_key
from lib.crypto.sealed import (
    CryptoError,
    KeyDecryptionError,
    MasterKey,
    MasterKeyError,
    MasterKeyMismatch,
    SealedKey,
    fingerprint,
    generate_master_key_b64,
    make_check_value,
    seal,
    unseal,
    verify_check_value,
)
from lib.key_format import InvalidKeyFormat, masked_hint, normalise_api_key
from lib.settings import Settings

# Fake but well-shaped: "AIza" + 35 allowed characters. Never a real key.
FAKE_KEY = "AIza" + "Fake_Key-0123456789abcdefghijklmnop"
assert len(FAKE_KEY) == 39
OTHER_FAKE_KEY = "AIza" + "x" * 35
KEY_NAME = "team-alpha primary"
ENV = "GEMINI_KEYS_MASTER_KEY"


def new_master(version: int = 1) -> MasterKey:
    return MasterKey.from_base64(generate_master_key_b64(), version)


@pytest.fixture
def master() -> MasterKey:
    return new_master()


def encrypt_api_key(master: MasterKey, *, key_id: uuid.UUID, plaintext: str) -> SealedKey:
    return seal(master, key_id, normalise_api_key(plaintext))


def decrypt(master: MasterKey, key_id: uuid.UUID, enc: SealedKey) -> str:
    """unseal() of a row holding `enc` under `key_id` and KEY_NAME."""
    return unseal(master, SimpleNamespace(id=key_id, name=KEY_NAME, **enc.columns()))


def flip_bit(b64: str) -> str:
    raw = bytearray(base64.b64decode(b64))
    raw[0] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


def assert_names_key_not_secret(exc: KeyDecryptionError, key_id: uuid.UUID) -> str:
    message = str(exc)
    assert KEY_NAME in message and str(key_id) in message
    assert FAKE_KEY not in message and FAKE_KEY[4:12] not in message
    assert isinstance(exc, CryptoError)
    return message


# --- AES-GCM of API keys -----------------------------------------------------------------


def test_encrypt_decrypt_round_trip(master):
    key_id = uuid.uuid4()
    enc = encrypt_api_key(master, key_id=key_id, plaintext=FAKE_KEY)
    assert len(base64.b64decode(enc.encryption_iv)) == 12
    assert len(base64.b64decode(enc.encryption_tag)) == 16
    assert len(base64.b64decode(enc.encrypted_key)) == len(FAKE_KEY)
    assert enc.master_key_version == 1
    assert FAKE_KEY not in repr(enc)
    assert decrypt(master, key_id, enc) == FAKE_KEY


def test_encrypt_uses_fresh_nonce_each_time(master):
    key_id = uuid.uuid4()
    first = encrypt_api_key(master, key_id=key_id, plaintext=FAKE_KEY)
    second = encrypt_api_key(master, key_id=key_id, plaintext=FAKE_KEY)
    assert first.encryption_iv != second.encryption_iv
    assert first.encrypted_key != second.encrypted_key


@pytest.mark.parametrize("column", ["encrypted_key", "encryption_iv", "encryption_tag"])
def test_decrypt_rejects_bit_flip(master, column):
    key_id = uuid.uuid4()
    enc = encrypt_api_key(master, key_id=key_id, plaintext=FAKE_KEY)
    tampered = replace(enc, **{column: flip_bit(getattr(enc, column))})
    with pytest.raises(KeyDecryptionError) as info:
        decrypt(master, key_id, tampered)
    message = assert_names_key_not_secret(info.value, key_id)
    assert "tampered" in message and "master key" in message


def test_decrypt_rejects_row_swap(master):
    enc = encrypt_api_key(master, key_id=uuid.uuid4(), plaintext=FAKE_KEY)
    other_id = uuid.uuid4()
    with pytest.raises(KeyDecryptionError) as info:
        decrypt(master, other_id, enc)
    assert "copied" in assert_names_key_not_secret(info.value, other_id)


def test_decrypt_rejects_wrong_master_key(master):
    key_id = uuid.uuid4()
    enc = encrypt_api_key(master, key_id=key_id, plaintext=FAKE_KEY)
    with pytest.raises(KeyDecryptionError) as info:
        decrypt(new_master(), key_id, enc)
    assert ENV in assert_names_key_not_secret(info.value, key_id)


def test_decrypt_rejects_other_master_key_version(master):
    key_id = uuid.uuid4()
    enc = encrypt_api_key(master, key_id=key_id, plaintext=FAKE_KEY)
    same_bytes_v2 = MasterKey(key=master.key, version=2)
    with pytest.raises(KeyDecryptionError) as info:
        decrypt(same_bytes_v2, key_id, enc)
    assert "version 1" in assert_names_key_not_secret(info.value, key_id)


def test_decrypt_rejects_edited_version_column(master):
    """A v1 row relabelled v2 fails with a v2 key of the same bytes (AAD has version)."""
    key_id = uuid.uuid4()
    enc = encrypt_api_key(master, key_id=key_id, plaintext=FAKE_KEY)
    with pytest.raises(KeyDecryptionError):
        decrypt(
            MasterKey(key=master.key, version=2),
            key_id,
            replace(enc, master_key_version=2),
        )


@pytest.mark.parametrize(
    ("column", "value", "expected"),
    [
        ("encrypted_key", "not base64!!", "base64"),
        ("encryption_iv", "@@@@", "base64"),
        ("encryption_tag", "abc", "base64"),
        ("encryption_iv", base64.b64encode(b"x" * 16).decode(), "12 bytes"),
        ("encryption_tag", base64.b64encode(b"x" * 8).decode(), "16 bytes"),
    ],
)
def test_decrypt_rejects_malformed_columns(master, column, value, expected):
    key_id = uuid.uuid4()
    enc = encrypt_api_key(master, key_id=key_id, plaintext=FAKE_KEY)
    with pytest.raises(KeyDecryptionError) as info:
        decrypt(master, key_id, replace(enc, **{column: value}))
    message = assert_names_key_not_secret(info.value, key_id)
    assert expected in message
    assert info.value.key_id == key_id and info.value.key_name == KEY_NAME


# --- fingerprint, hint, key shape -----------------------------------------------------


def test_fingerprint_is_stable_and_ignores_surrounding_whitespace(master):
    first = fingerprint(master, normalise_api_key(FAKE_KEY))
    assert first == fingerprint(master, normalise_api_key(f"  {FAKE_KEY}\n"))
    assert len(first) == 64 and int(first, 16) >= 0
    assert first != fingerprint(master, normalise_api_key(OTHER_FAKE_KEY))


def test_fingerprint_differs_across_master_keys(master):
    key = normalise_api_key(FAKE_KEY)
    assert fingerprint(master, key) != fingerprint(new_master(), key)


def test_masked_hint_shows_at_most_eight_characters():
    assert masked_hint(normalise_api_key(FAKE_KEY)) == "AIza…mnop"
    assert masked_hint(normalise_api_key(f" {FAKE_KEY} ")) == "AIza…mnop"
    assert masked_hint("short-secret") == "…"


def test_normalise_api_key_trims_whitespace():
    assert normalise_api_key(f"\t {FAKE_KEY} \r\n") == FAKE_KEY


BAD_KEYS = [
    "AIza" + "q" * 34,  # one short
    "AIza" + "q" * 36,  # one long
    "AIzb" + "q" * 35,  # wrong prefix
    "aiza" + "q" * 35,  # wrong case
    "AIza" + "q" * 17 + " " + "q" * 17,  # inner space
    "AIza" + "q" * 34 + "!",  # punctuation
    "AIza" + "q" * 34 + "é",  # non-ASCII letter
    "AIza" + "q" * 17 + "\u200b" + "q" * 17,  # zero-width space
    "Bearer AIza" + "q" * 35,  # header pasted
    "key=AIza" + "q" * 35,  # URL fragment pasted
    '"AIza' + "q" * 35 + '"',  # quoted
    "sk-proj-abcdefghijklmnopqrstuvwxyz012345",  # another vendor's key
]


@pytest.mark.parametrize("bad", BAD_KEYS)
def test_normalise_api_key_rejects_bad_shape_without_echoing_it(bad):
    with pytest.raises(InvalidKeyFormat) as info:
        normalise_api_key(bad)
    message = str(info.value)
    assert "doesn't look like a Gemini API key" in message
    # No 6-character window of the submitted text may appear in the message.
    assert not any(bad[i : i + 6] in message for i in range(len(bad) - 5))


@pytest.mark.parametrize("bad", ["", "   ", None, b"AIza" + b"q" * 35])
def test_normalise_api_key_rejects_empty_and_non_text(bad):
    with pytest.raises(InvalidKeyFormat):
        normalise_api_key(bad)


# --- master key parsing ---------------------------------------------------------------


def test_master_key_repr_hides_bytes(master):
    assert repr(master) == "MasterKey(version=1)"
    assert base64.b64encode(master.key).decode() not in str(master)


def test_master_key_from_base64_strips_whitespace():
    text = generate_master_key_b64()
    assert MasterKey.from_base64(f"  {text}\n", version=3) == MasterKey.from_base64(
        text, 3
    )


BAD_MASTER_KEYS = [
    base64.b64encode(os.urandom(16)).decode(),  # too short
    base64.b64encode(os.urandom(33)).decode(),  # too long
    base64.urlsafe_b64encode(b"\xfb" * 31 + b"\xff").decode(),  # URL-safe alphabet
    "Zm9vYmFy%%%not-base64-at-all-0123456789",  # not base64
    base64.b64encode(b"\x00" * 32).decode(),  # all zero
    base64.b64encode(b"\x41" * 32).decode(),  # same byte repeated
    "changeme",
    "CHANGE_ME",
]


# ids by position: some bad values are random, and pytest-xdist's workers must agree on ids
@pytest.mark.parametrize("bad", BAD_MASTER_KEYS,
                         ids=[f"bad-{i}" for i in range(len(BAD_MASTER_KEYS))])
def test_master_key_rejects_bad_value_without_echoing_it(bad):
    with pytest.raises(MasterKeyError) as info:
        MasterKey.from_base64(bad)
    message = str(info.value)
    assert bad not in message
    assert ENV in message and "os.urandom(32)" in message


@pytest.mark.parametrize("version", [0, -1, True, "1"])
def test_master_key_rejects_bad_version(version):
    with pytest.raises(MasterKeyError):
        MasterKey(key=os.urandom(32), version=version)


# --- check value ----------------------------------------------------------------------


def test_check_value_verifies_with_same_master_key(master):
    check = make_check_value(master)
    assert check.startswith("v1.")
    verify_check_value(master, check)
    verify_check_value(
        MasterKey.from_base64(base64.b64encode(master.key).decode()), check
    )


def test_check_value_rejects_other_master_key(master):
    with pytest.raises(MasterKeyMismatch) as info:
        verify_check_value(new_master(), make_check_value(master))
    message = str(info.value)
    assert (
        "version 1" in message and ENV in message and "Master key rotation" in message
    )


def test_check_value_rejects_other_version(master):
    with pytest.raises(MasterKeyMismatch) as info:
        verify_check_value(
            MasterKey(key=master.key, version=2), make_check_value(master)
        )
    assert info.value.version == 1


@pytest.mark.parametrize("bad", ["", "v1.abc", "x1.AAAA.AAAA", "v1.@@.@@", None])
def test_check_value_rejects_malformed(master, bad):
    with pytest.raises(MasterKeyError):
        verify_check_value(master, bad)


# --- loading ---------------------------------------------------------------------------


def load(data_dir, env=None, secrets=None, *, production=False):
    """load_master_key with settings made only of `env`, `secrets` and the data dir."""
    env = {"GEMINI_KEYS_DATA_DIR": str(data_dir), **(env or {})}
    if production:
        env["GEMINI_KEYS_ENV"] = "production"
    return load_master_key(Settings.load(env, secrets))


def test_dev_default_created_once_with_mode_0600_and_reused(tmp_path, caplog):
    data_dir = tmp_path / "data" / "nested"
    with caplog.at_level(logging.WARNING, logger="gemini_keys"):
        first, is_dev = load(data_dir)
    path = data_dir / "master.key"
    assert is_dev is True
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert (
        "DEVELOPMENT master key generated at" in caplog.text
        and str(path) in caplog.text
    )
    stored = path.read_text().strip()
    assert stored not in caplog.text
    assert list(data_dir.iterdir()) == [path]  # no temporary file left behind

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="gemini_keys"):
        second, is_dev = load(data_dir)
    assert is_dev is True and second == first
    assert "generated" not in caplog.text and stored not in caplog.text


def test_dev_default_refuses_loose_permissions(tmp_path):
    load(tmp_path)
    (tmp_path / "master.key").chmod(0o644)
    with pytest.raises(MasterKeyError, match="chmod 600"):
        load(tmp_path)


def test_env_beats_secrets_beats_dev_file(tmp_path):
    env_key, secret_key = generate_master_key_b64(), generate_master_key_b64()
    dev, _ = load(tmp_path)

    loaded, is_dev = load(tmp_path, {ENV: env_key}, {ENV: secret_key})
    assert loaded == MasterKey.from_base64(env_key) and is_dev is False

    loaded, is_dev = load(tmp_path, {}, {ENV: secret_key})
    assert loaded == MasterKey.from_base64(secret_key) and is_dev is False

    loaded, is_dev = load(tmp_path, {}, {})
    assert loaded == dev and is_dev is True


def test_load_ignores_a_version_setting_the_database_decides(tmp_path):
    # The version in force lives in gemini_master_key_check (verify_master_key).
    key = generate_master_key_b64()
    loaded, _ = load(tmp_path, {ENV: key, "GEMINI_KEYS_MASTER_KEY_VERSION": "2"},
                     production=True)
    assert loaded.version == 1


class MissingSecretsFile(dict):
    """Behaves like st.secrets without a secrets.toml: every read raises."""

    def get(self, key, default=None):
        raise FileNotFoundError("No secrets found")


def test_load_treats_missing_secrets_file_as_unset(tmp_path):
    with pytest.raises(MasterKeyError, match="no master key configured"):
        load(tmp_path, {}, MissingSecretsFile(), production=True)


def test_load_without_dev_default_and_nothing_configured_raises(tmp_path):
    with pytest.raises(MasterKeyError, match="no master key configured") as info:
        load(tmp_path, production=True)
    assert ENV in str(info.value)
    assert not (tmp_path / "master.key").exists()


def test_load_rejects_invalid_env_value_without_falling_back(tmp_path):
    with pytest.raises(MasterKeyError) as info:
        load(tmp_path, {ENV: "changeme"})
    assert "changeme" not in str(info.value)
    assert not (tmp_path / "master.key").exists()
