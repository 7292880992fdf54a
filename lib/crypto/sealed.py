"""Sealing stored Gemini API keys (AES-256-GCM): seal a key for its row, unseal a row.

Key use, so that one master key never serves two purposes with the same bytes:
- the raw 32-byte master key encrypts API keys (AES-GCM, AAD bound to the row);
- HKDF-SHA256 subkeys with distinct ``info`` labels key the duplicate fingerprint
  (HMAC) and the check value that tells whether the configured key fits the database.
Nothing here logs, and no error message carries a plaintext key or key material.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from lib.errors import GeminiKeysError
from lib.key_format import ApiKeyText, masked_hint
from lib.redact import remember_secret

MASTER_KEY_ENV = "GEMINI_KEYS_MASTER_KEY"
GENERATE_HINT = (
    "generate one with: "
    'python -c "import os,base64;print(base64.b64encode(os.urandom(32)).decode())"'
)

_NONCE_BYTES = 12
_TAG_BYTES = 16
_KEY_AAD_PREFIX = b"gemini-key:v1:"
_FINGERPRINT_INFO = b"gemini-key-manager:fingerprint-hmac:v1"
_CHECK_INFO = b"gemini-key-manager:check-value:v1"
_CHECK_PLAINTEXT = b"gemini-key-manager check value"
# Lower-cased texts people paste from examples instead of a real key.
_PLACEHOLDERS = frozenset(
    {"changeme", "change-me", "change_me", "secret", "password", "example", "test"}
)


class CryptoError(GeminiKeysError):
    """Base class for every error raised by this module."""


class MasterKeyError(CryptoError):
    """The master key is missing, malformed or a placeholder."""


class MasterKeyMismatch(MasterKeyError):
    """The configured master key is not the one the database's keys were encrypted with."""

    def __init__(self, version: int, detail: str = "") -> None:
        self.version = version
        super().__init__(
            "the configured master key cannot decrypt the keys stored in this database "
            f"(version {version}){detail}; set {MASTER_KEY_ENV} to the key that was used, "
            "or see README 'Master key rotation'"
        )


class KeyDecryptionError(CryptoError):
    """A stored key failed to decrypt; the message names the key, never its value."""

    def __init__(self, key_id: uuid.UUID, key_name: str, reason: str) -> None:
        self.key_id = key_id
        self.key_name = key_name
        self.reason = reason
        super().__init__(f"cannot decrypt API key {key_name!r} (id {key_id}): {reason}")



@dataclass(frozen=True)
class MasterKey:
    """The 32-byte master key and its version; repr shows only the version."""

    key: bytes = field(repr=False)
    version: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.key, bytes) or len(self.key) != 32:
            raise MasterKeyError(
                f"master key must be exactly 32 bytes; {GENERATE_HINT}"
            )
        version = self.version
        if (
            isinstance(version, bool)
            or not isinstance(version, int)
            or not 0 < version < 2**31
        ):
            raise MasterKeyError(
                "master key version must be a positive integer (PostgreSQL int)"
            )
        if len(set(self.key)) == 1:
            raise MasterKeyError(
                f"master key is a placeholder (the same byte repeated); {GENERATE_HINT}"
            )

    @classmethod
    def from_base64(
        cls, text: str, version: int = 1, *, source: str = MASTER_KEY_ENV
    ) -> MasterKey:
        """Parse base64 of 32 bytes; errors name ``source``, never echo the value."""
        expected = (
            f"{source} must be standard base64 of exactly 32 random bytes "
            "(44 characters ending in '=')"
        )
        if not isinstance(text, str):
            raise MasterKeyError(
                f"{expected}, got a {type(text).__name__}; {GENERATE_HINT}"
            )
        compact = "".join(text.split())
        if compact.lower() in _PLACEHOLDERS:
            raise MasterKeyError(
                f"{source} is a placeholder, not a key; {GENERATE_HINT}"
            )
        try:
            raw = base64.b64decode(compact, validate=True)
        except (binascii.Error, ValueError):
            raise MasterKeyError(
                f"{expected}; the value ({len(compact)} characters) is not valid base64; "
                f"{GENERATE_HINT}"
            ) from None
        if len(raw) != 32:
            raise MasterKeyError(
                f"{expected}; the value decodes to {len(raw)} bytes; {GENERATE_HINT}"
            )
        try:
            return cls(key=raw, version=version)
        except MasterKeyError as exc:
            raise MasterKeyError(f"{source}: {exc}") from None


@dataclass(frozen=True)
class SealedKey:
    """What a gemini_api_keys row stores of a key: ciphertext, nonce and tag (base64), the
    master-key version used, the duplicate fingerprint and the masked hint."""

    encrypted_key: str
    encryption_iv: str
    encryption_tag: str
    master_key_version: int
    fingerprint: str
    masked_hint: str

    def columns(self) -> dict[str, Any]:
        """The row's columns, by name (the one mapping between a sealed key and its row)."""
        return {"encrypted_key": self.encrypted_key, "encryption_iv": self.encryption_iv,
                "encryption_tag": self.encryption_tag,
                "master_key_version": self.master_key_version,
                "fingerprint": self.fingerprint, "masked_hint": self.masked_hint}


class SealedRow(Protocol):
    """A stored key's row as unseal() reads it (an ApiKey, or a result row)."""

    id: uuid.UUID
    name: str
    encrypted_key: str
    encryption_iv: str
    encryption_tag: str
    master_key_version: int


def generate_master_key_b64() -> str:
    """Return a fresh random master key as standard base64 (what the env var expects)."""
    return base64.b64encode(os.urandom(32)).decode("ascii")


def _subkey(master: MasterKey, info: bytes) -> bytes:
    # HKDF objects are single-use; deriving per call is cheap and keeps MasterKey immutable.
    return HKDF(algorithm=SHA256(), length=32, salt=None, info=info).derive(master.key)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _key_aad(key_id: uuid.UUID, version: int) -> bytes:
    # key_id.bytes is fixed-width, so prefix + id + version cannot be ambiguous.
    return _KEY_AAD_PREFIX + key_id.bytes + version.to_bytes(4, "big")


def seal(master: MasterKey, key_id: uuid.UUID, api_key: ApiKeyText) -> SealedKey:
    """Encrypt with a fresh nonce, bound to this row's id and master key version."""
    nonce = os.urandom(_NONCE_BYTES)
    sealed = AESGCM(master.key).encrypt(
        nonce, api_key.encode("utf-8"), _key_aad(key_id, master.version)
    )
    return SealedKey(
        encrypted_key=_b64(sealed[:-_TAG_BYTES]),
        encryption_iv=_b64(nonce),
        encryption_tag=_b64(sealed[-_TAG_BYTES:]),
        master_key_version=master.version,
        fingerprint=fingerprint(master, api_key),
        masked_hint=masked_hint(api_key),
    )


def unseal(master: MasterKey, row: SealedRow) -> str:
    """Decrypt one stored key; a bad row raises KeyDecryptionError naming the key.

    A row under a newer master-key version raises MasterKeyMismatch instead: the process,
    not the key, is out of date.
    """

    key_id, key_name = row.id, row.name
    master_key_version = row.master_key_version

    def fail(reason: str) -> KeyDecryptionError:
        return KeyDecryptionError(key_id, key_name, reason)

    if master_key_version > master.version:
        # Not a bad row: this process predates a rotation. Callers that disable keys they
        # cannot decrypt (the pool, health checks) must not treat this as the key's fault.
        raise MasterKeyMismatch(
            master_key_version,
            f": this process holds master key version {master.version} but key "
            f"{key_name!r} is under version {master_key_version}, so the master key was "
            "rotated (python -m lib.cli rotate-master-key). Restart with the NEW key")
    if master_key_version != master.version:
        raise fail(
            f"it was encrypted with master key version {master_key_version} but the "
            f"configured master key is version {master.version}"
        )
    parts: dict[str, bytes] = {}
    for column, text in (
        ("encrypted_key", row.encrypted_key),
        ("encryption_iv", row.encryption_iv),
        ("encryption_tag", row.encryption_tag),
    ):
        try:
            parts[column] = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError, TypeError):
            raise fail(f"column {column} is not valid base64 (corrupted row)") from None
    if len(parts["encryption_iv"]) != _NONCE_BYTES:
        raise fail(
            f"encryption_iv must decode to {_NONCE_BYTES} bytes, "
            f"got {len(parts['encryption_iv'])} (corrupted row)"
        )
    if len(parts["encryption_tag"]) != _TAG_BYTES:
        raise fail(
            f"encryption_tag must decode to {_TAG_BYTES} bytes, "
            f"got {len(parts['encryption_tag'])} (corrupted row)"
        )
    try:
        plain = AESGCM(master.key).decrypt(
            parts["encryption_iv"],
            parts["encrypted_key"] + parts["encryption_tag"],
            _key_aad(key_id, master_key_version),
        )
    except InvalidTag:
        raise fail(
            "authentication failed: the row was tampered with or copied from another key, "
            f"or {MASTER_KEY_ENV} is not the master key it was encrypted with"
        ) from None
    try:
        api_key = plain.decode("utf-8")
    except UnicodeDecodeError:  # its str() would quote a plaintext byte, so replace it
        raise fail("decrypted value is not UTF-8 text") from None
    remember_secret(api_key)  # redacted by exact match from now on, whatever its shape
    return api_key



def fingerprint(master: MasterKey, api_key: ApiKeyText) -> str:
    """Keyed hash of the normalised key, so duplicates are found without decrypting rows.

    Depends on the master key: rotating the master key means recomputing fingerprints.
    """
    return hmac.new(
        _subkey(master, _FINGERPRINT_INFO), api_key.encode("ascii"), hashlib.sha256
    ).hexdigest()



def make_check_value(master: MasterKey) -> str:
    """Encrypt a known text so a later start can tell if its master key fits the DB."""
    nonce = os.urandom(_NONCE_BYTES)
    aad = f"gemini-key-check:v{master.version}".encode("ascii")
    sealed = AESGCM(_subkey(master, _CHECK_INFO)).encrypt(nonce, _CHECK_PLAINTEXT, aad)
    return f"v{master.version}.{_b64(nonce)}.{_b64(sealed)}"


def verify_check_value(master: MasterKey, check_value: str) -> None:
    """Raise MasterKeyMismatch unless ``master`` produced ``check_value``."""
    try:
        version_text, nonce_b64, sealed_b64 = check_value.split(".")
        if not version_text.startswith("v") or not version_text[1:].isdigit():
            raise ValueError
        version = int(version_text[1:])
        nonce = base64.b64decode(nonce_b64, validate=True)
        sealed = base64.b64decode(sealed_b64, validate=True)
    except (AttributeError, ValueError, binascii.Error):
        raise MasterKeyError(
            "the stored master key check value is malformed "
            "(expected 'v<version>.<nonce>.<data>')"
        ) from None
    if version != master.version:
        raise MasterKeyMismatch(
            version, f": the configured key is declared as version {master.version}"
        )
    aad = f"gemini-key-check:v{version}".encode("ascii")
    try:
        plain = AESGCM(_subkey(master, _CHECK_INFO)).decrypt(nonce, sealed, aad)
    except (InvalidTag, ValueError):  # ValueError: nonce of the wrong length
        raise MasterKeyMismatch(version) from None
    if not hmac.compare_digest(plain, _CHECK_PLAINTEXT):
        raise MasterKeyMismatch(version)
