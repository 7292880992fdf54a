"""Passwords: strength rules and bcrypt hashes (as Supabase Auth stores them, $2a$/$2b$)."""

from __future__ import annotations

import functools
import secrets

import bcrypt

from lib.errors import InvalidInput

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_BYTES = 72  # bcrypt's limit; bcrypt 5 refuses longer input
COMMON_PASSWORDS = {"password1234", "123456789012", "qwertyuiopas", "adminadmin12",
                    "passwordpassword", "letmeinletmein"}

def check_password_strength(password: str) -> None:
    """Refuse empty, short, one-character and well-known passwords (message never echoes it)."""
    if not password:
        raise InvalidInput("The password is empty.")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(f"The password must have at least {MIN_PASSWORD_LENGTH} characters.")
    if len(password.encode()) > MAX_PASSWORD_BYTES:
        raise InvalidInput(f"The password must be at most {MAX_PASSWORD_BYTES} bytes long.")
    if len(set(password)) < 4 or password.lower() in COMMON_PASSWORDS:
        raise InvalidInput("The password is too easy to guess; choose a longer, varied one.")


def hash_password(password: str, rounds: int) -> str:
    """A bcrypt hash at cost `rounds` (Settings.bcrypt_rounds)."""
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds)).decode()

def password_matches(password: str, password_hash: str | None) -> bool:
    """bcrypt check that tolerates Supabase's $2a$ hashes and missing hashes."""
    if not password_hash:
        return False
    try:
        return bcrypt.checkpw(password.encode(), password_hash.encode())
    except ValueError:
        return False


@functools.cache
def dummy_hash(rounds: int) -> str:
    """A hash to check unknown emails against, so they cost as much time as a wrong password."""
    return bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(rounds)).decode()
