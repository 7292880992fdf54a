"""The one-time setup code that lets the first admin be created in the browser.

While no admin exists, the server prints a setup code to its console (lib/ui/startup.py at
server start; the sign-in page prints a new one when the last has expired or been used).
Only its SHA-256 is stored, in the single row of gemini_setup_code (migration 0011). The
code creates one admin, once, before it expires, and never once any admin exists (one
made with `create-user --admin` included). Issuing a code is audited (setup_code_issued),
so is each wrong one (setup_code_failed) and the admin it creates (user_created, "via":
"setup code"). Wrong codes are counted per 15-minute window (across codes, so a new code
does not reset the count); past MAX_FAILURES the form is refused until the window ends.

Everything here runs as the service identity (the sign-in page's), in the caller's
transaction; a refused attempt returns its message so the caller commits its count.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import math
import secrets
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.orm import Session

from lib.audit.log import Action, write_audit
from lib.errors import InvalidInput
from lib.users.accounts import Account, admin_exists, create_user, normalise_email
from lib.users.passwords import check_password_strength
from lib.users.signin import db_now

ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I/L: read off a console
GROUPS, GROUP_LENGTH = 4, 4  # 16 characters, about 79 bits
MAX_FAILURES = 5
WINDOW = dt.timedelta(minutes=15)
NO_CODE = ("No setup code is active. Restart the server (or reload this page) and use the "
           "code it prints to its console.")
WRONG_CODE = ("That setup code is not valid (codes expire and work once). Check the server's "
              "console.")
ADMIN_EXISTS = "An admin exists already: sign in instead."


@dataclass(frozen=True)
class IssuedCode:
    """A code just issued: shown once on the server's console, never stored."""

    code: str
    expires_at: dt.datetime

    def __repr__(self) -> str:
        return f"IssuedCode(code='***', expires_at={self.expires_at!r})"


def new_code() -> str:
    groups = ("".join(secrets.choice(ALPHABET) for _ in range(GROUP_LENGTH))
              for _ in range(GROUPS))
    return "-".join(groups)


def normalise_code(code: str) -> str:
    """Upper case, without spaces and dashes (as typed off a console)."""
    return "".join(ch for ch in (code or "").upper() if ch not in " -\t")


def code_hash(code: str) -> str:
    return hashlib.sha256(normalise_code(code).encode()).hexdigest()


_ROW = text("SELECT code_hash, expires_at, used_at, failures, window_start "
            "FROM gemini_setup_code WHERE id = 1 FOR UPDATE")


def ensure_setup_code(session: Session, *, minutes: int, force: bool = False
                      ) -> IssuedCode | None:
    """While no admin exists: a new code when none is live (or `force`, at server start),
    else None (the live one was printed already). Audited as setup_code_issued."""
    if admin_exists(session):
        return None
    now = db_now(session)
    row = session.execute(_ROW).mappings().first()
    if row is not None and not force and row["used_at"] is None and row["expires_at"] > now:
        return None
    issued = IssuedCode(new_code(), now + dt.timedelta(minutes=minutes))
    session.execute(text(
        "INSERT INTO gemini_setup_code (id, code_hash, created_at, expires_at) "
        "VALUES (1, :hash, :now, :expires) ON CONFLICT (id) DO UPDATE SET "
        "code_hash = excluded.code_hash, created_at = excluded.created_at, "
        "expires_at = excluded.expires_at, used_at = NULL"),
        {"hash": code_hash(issued.code), "now": now, "expires": issued.expires_at})
    write_audit(session, action=Action.SETUP_CODE_ISSUED,
                details={"expires_at": issued.expires_at.isoformat(timespec="seconds")})
    return issued


def setup_possible(session: Session) -> bool:
    """Whether the sign-in page offers "Create the first admin" (no admin yet)."""
    return not admin_exists(session)


def _throttled(row, now: dt.datetime) -> str | None:
    start = row["window_start"]
    if start is None or now - start >= WINDOW or row["failures"] < MAX_FAILURES:
        return None
    minutes = max(1, math.ceil((start + WINDOW - now).total_seconds() / 60))
    return (f"Too many wrong setup codes: wait {minutes} minute{'s' if minutes != 1 else ''} "
            "before trying again.")


def create_first_admin(session: Session, *, code: str, email: str, password: str,
                       password_again: str, bcrypt_rounds: int) -> Account | str:
    """The first admin, or the message to show (the caller commits either way: a wrong
    code's count and audit row must be stored). Bad input (email, passwords) is refused
    before the code is looked at and costs no attempt."""
    email = normalise_email(email)
    if password != password_again:
        raise InvalidInput("The two passwords differ.")
    check_password_strength(password)
    row = session.execute(_ROW).mappings().first()  # serialises concurrent attempts
    if admin_exists(session):
        return ADMIN_EXISTS
    if row is None:
        return NO_CODE
    now = db_now(session)
    waiting = _throttled(row, now)
    if waiting:
        return waiting
    live = row["used_at"] is None and row["expires_at"] > now
    if not (live and hmac.compare_digest(code_hash(code), row["code_hash"])):
        fresh = row["window_start"] is None or now - row["window_start"] >= WINDOW
        session.execute(text(
            "UPDATE gemini_setup_code SET failures = :failures, window_start = :start "
            "WHERE id = 1"),
            {"failures": 1 if fresh else row["failures"] + 1,
             "start": now if fresh else row["window_start"]})
        write_audit(session, action=Action.SETUP_CODE_FAILED,
                    details={"email": email, "reason": "expired or used" if not live
                             else "wrong code"})
        return WRONG_CODE
    session.execute(text("UPDATE gemini_setup_code SET used_at = :now WHERE id = 1"),
                    {"now": now})
    # One audit row for the success: user_created, via the setup code.
    return create_user(session, email=email, password=password, bcrypt_rounds=bcrypt_rounds,
                       admin=True, via="setup code")
