"""Password sign-in with throttling (plain Python).

The password is checked here, never by streamlit-authenticator: its own login form keeps its
failure counter in process memory and would verify a password before our lock could refuse
it. The authenticator only signs, sets, reads and deletes the "remember me" cookie.
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from dataclasses import dataclass

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from db.models import SignInAttempt
from lib.audit.log import Action, write_audit
from lib.errors import InvalidInput
from lib.users.accounts import find_user, normalise_email
from lib.users.passwords import dummy_hash, password_matches

WRONG_CREDENTIALS = "Email or password is incorrect."


@dataclass(frozen=True)
class Throttle:
    """`max_failures` failed sign-ins within `window` lock the account for `lock`."""

    max_failures: int = 5
    window: dt.timedelta = dt.timedelta(minutes=15)
    lock: dt.timedelta = dt.timedelta(minutes=15)


THROTTLE = Throttle()


@dataclass(frozen=True)
class SignInResult:
    email: str
    user_id: uuid.UUID | None = None
    locked_until: dt.datetime | None = None  # naive UTC
    message: str = WRONG_CREDENTIALS

    @property
    def ok(self) -> bool:
        return self.user_id is not None



def db_now(session: Session) -> dt.datetime:
    """The database's clock as naive UTC (connections run with timezone=UTC)."""
    return session.scalar(text("SELECT localtimestamp"))


def locked_until(session: Session, email: str, *, now: dt.datetime,
                 throttle: Throttle = THROTTLE) -> dt.datetime | None:
    """When the account's lock ends, or None if it is not locked at `now`.

    Only failures after the last successful sign-in count. A lock starts at the failure that
    made `max_failures` within `window`, and lasts `lock` from there.
    """
    since = now - throttle.window - throttle.lock
    last_success = session.scalar(
        select(func.max(SignInAttempt.attempted_at))
        .where(func.lower(SignInAttempt.email) == email, SignInAttempt.succeeded.is_(True)))
    if last_success is not None and last_success > since:
        since = last_success
    failures = session.scalars(
        select(SignInAttempt.attempted_at)
        .where(func.lower(SignInAttempt.email) == email, SignInAttempt.succeeded.is_(False),
               SignInAttempt.attempted_at > since, SignInAttempt.attempted_at <= now)
        .order_by(SignInAttempt.attempted_at)).all()
    n = throttle.max_failures
    until = None
    for i in range(n - 1, len(failures)):
        if failures[i] - failures[i - n + 1] <= throttle.window:
            until = failures[i] + throttle.lock
    return until if until is not None and until > now else None


def lock_message(until: dt.datetime, now: dt.datetime) -> str:
    minutes = max(1, math.ceil((until - now).total_seconds() / 60))
    return (f"Too many failed sign-ins for this account: it is locked for {minutes} more "
            f"minute{'s' if minutes != 1 else ''}. Try again later, or ask an admin to reset "
            "your password.")


def sign_in(session: Session, email: str, password: str, *, bcrypt_rounds: int,
            now: dt.datetime | None = None, throttle: Throttle = THROTTLE) -> SignInResult:
    """Check the lock, then the password; record the attempt (never the password) and audit
    a failure. Returns the outcome instead of raising, so the caller commits the record.

    Raises InvalidInput (nothing recorded) for a malformed email or an empty password.
    """
    email = normalise_email(email)
    if not password:
        raise InvalidInput("Enter your password.")
    # One attempt per account at a time, so parallel guesses cannot slip past the count.
    session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"),
                    {"k": f"gemini-keys-sign-in:{email}"})
    now = now or db_now(session)
    until = locked_until(session, email, now=now, throttle=throttle)
    if until is not None:
        # Refused without checking the password, and not counted (it would extend the lock).
        write_audit(session, action=Action.SIGN_IN_FAILED,
                    details={"email": email, "reason": "locked", "locked_until": until.isoformat()})
        return SignInResult(email, locked_until=until, message=lock_message(until, now))

    user = find_user(session, email)
    stored = (session.scalar(text("SELECT public.gemini_auth_password_hash(:id)"),
                             {"id": user.id}) if user else dummy_hash(bcrypt_rounds))
    matched = password_matches(password, stored)
    ok = user is not None and matched
    session.add(SignInAttempt(email=email, succeeded=ok, attempted_at=now))
    session.flush()
    if ok:
        session.execute(text("SELECT public.gemini_auth_record_sign_in(:id)"), {"id": user.id})
        return SignInResult(email, user_id=user.id, message="Signed in.")

    reason = "wrong_password" if user is not None else "unknown_email"
    until = locked_until(session, email, now=now, throttle=throttle)
    if until is None:
        write_audit(session, action=Action.SIGN_IN_FAILED,
                    details={"email": email, "reason": reason})
        return SignInResult(email)
    write_audit(session, action=Action.ACCOUNT_LOCKED,
                details={"email": email, "reason": reason, "failures": throttle.max_failures,
                         "locked_until": until.isoformat()})
    return SignInResult(email, locked_until=until,
                        message=f"{WRONG_CREDENTIALS} {lock_message(until, now)}")
