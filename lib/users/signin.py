"""Password sign-in, throttled per account and client address (plain Python; the service
identity runs it).

Failed sign-ins are counted per (account, client address, 15-minute window) in
gemini_sign_in_failures. Each attempt is judged in four scopes; once a scope has had its free
failures (within the last hour), every further attempt there must wait a delay that doubles
with each failure (1 s, 2 s, 4 s, ... up to 15 minutes) after the scope's last failure:

    scope                           free failures   not applied to
    this account from this client         5         -
    this client, any account             10         -        (password spraying)
    this account, any client             20         clients that signed in to it before
    everyone                            100         clients that signed in to it before

So an attacker elsewhere slows himself down, not the owner: a client that has signed in to
the account before (within 30 days) is judged only by its own failures. An attempt that must
wait is refused without checking the password and is not counted as a failure (it would
lengthen the wait); it only bumps the window's `refused` count.

The audit log gets at most one sign_in_failed and one sign_in_throttled row per account,
client and window; the counts and first/last times stay in gemini_sign_in_failures.
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from dataclasses import dataclass

from sqlalchemy import delete, func, select, text
from sqlalchemy.orm import Session

from db.models import SignInAttempt, SignInFailure
from lib.audit.log import Action, write_audit
from lib.errors import InvalidInput
from lib.users.accounts import find_user, normalise_email
from lib.users.passwords import dummy_hash, password_matches

WRONG_CREDENTIALS = "Email or password is incorrect."
UNKNOWN_CLIENT = "unknown"
MAX_CLIENT_LENGTH = 64


@dataclass(frozen=True)
class Throttle:
    """Free failures per scope, the doubling delay after them, and the windows."""

    account_client: int = 5
    client: int = 10
    account: int = 20
    everyone: int = 100
    first_delay: dt.timedelta = dt.timedelta(seconds=1)
    max_delay: dt.timedelta = dt.timedelta(minutes=15)
    lookback: dt.timedelta = dt.timedelta(hours=1)  # older failures are forgotten
    window: dt.timedelta = dt.timedelta(minutes=15)  # one counted row per account and client
    known_client_for: dt.timedelta = dt.timedelta(days=30)

    def delay(self, failures: int, free: int) -> dt.timedelta:
        """How long to wait after the last failure of a scope that has had `failures`."""
        if failures < free:
            return dt.timedelta(0)
        doublings = min(failures - free, 40)  # 2**40 s is far beyond any max_delay
        return min(self.first_delay * 2 ** doublings, self.max_delay)

    def window_start(self, moment: dt.datetime) -> dt.datetime:
        epoch = dt.datetime(2000, 1, 1)
        return moment - (moment - epoch) % self.window


THROTTLE = Throttle()


@dataclass(frozen=True)
class SignInResult:
    email: str
    user_id: uuid.UUID | None = None
    retry_at: dt.datetime | None = None  # naive UTC: no attempt is judged before then
    message: str = WRONG_CREDENTIALS

    @property
    def ok(self) -> bool:
        return self.user_id is not None


def db_now(session: Session) -> dt.datetime:
    """The database's clock now (not at the transaction's start: an attempt that waited for
    another's lock must see that one's failure as past), naive UTC (connections run with
    timezone=UTC)."""
    return session.scalar(text("SELECT clock_timestamp()::timestamp"))


def client_label(address: str | None) -> str:
    """The client address as stored: trimmed, at most 64 characters, "unknown" if none."""
    return (address or "").strip()[:MAX_CLIENT_LENGTH] or UNKNOWN_CLIENT


def is_known_client(session: Session, email: str, client: str, *, now: dt.datetime,
                    throttle: Throttle = THROTTLE) -> bool:
    """Whether `client` signed in to `email` successfully within known_client_for."""
    return bool(session.scalar(
        select(func.count()).select_from(SignInAttempt)
        .where(func.lower(SignInAttempt.email) == email, SignInAttempt.succeeded.is_(True),
               SignInAttempt.client_address == client,
               SignInAttempt.attempted_at > now - throttle.known_client_for)))


def _last_success(session: Session, email: str) -> dt.datetime | None:
    return session.scalar(
        select(func.max(SignInAttempt.attempted_at))
        .where(func.lower(SignInAttempt.email) == email, SignInAttempt.succeeded.is_(True)))


def retry_at(session: Session, email: str, client: str, *, now: dt.datetime,
             throttle: Throttle = THROTTLE) -> dt.datetime | None:
    """When `client` may next try `email`, or None if it may now (see the module docstring).

    A success forgets that client's failures for the account (sign_in deletes them), and
    account-wide only failures after it count.
    """
    since = now - throttle.lookback

    def after(moment: dt.datetime | None) -> dt.datetime:
        return max(since, moment) if moment is not None else since

    known = is_known_client(session, email, client, now=now, throttle=throttle)
    account_since = after(_last_success(session, email))
    scopes = [
        (throttle.account_client, (SignInFailure.email == email)
         & (SignInFailure.client_address == client)),
        (throttle.client, SignInFailure.client_address == client),
    ]
    if not known:
        scopes += [
            (throttle.account, (SignInFailure.email == email)
             & (SignInFailure.last_failed_at > account_since)),
            (throttle.everyone, SignInFailure.last_failed_at > since),
        ]
    columns = []
    for _, condition in scopes:
        columns += [func.coalesce(func.sum(SignInFailure.failures).filter(condition), 0),
                    func.max(SignInFailure.last_failed_at).filter(condition)]
    row = session.execute(select(*columns).where(SignInFailure.last_failed_at > since,
                                                 SignInFailure.last_failed_at <= now)).one()
    waits = []
    for i, (free, _) in enumerate(scopes):
        failures, last = int(row[2 * i]), row[2 * i + 1]
        delay = throttle.delay(failures, free)
        if last is not None and delay and last + delay > now:
            waits.append(last + delay)
    return max(waits) if waits else None


def wait_message(until: dt.datetime, now: dt.datetime) -> str:
    seconds = max(1, math.ceil((until - now).total_seconds()))
    wait = (f"{seconds} second{'s' if seconds != 1 else ''}" if seconds < 120
            else f"{math.ceil(seconds / 60)} minutes")
    return (f"Too many failed sign-ins: wait {wait} before trying again. If you have "
            "forgotten your password, ask an admin to reset it.")


def _count(session: Session, email: str, client: str, now: dt.datetime, *, failed: bool,
           throttle: Throttle) -> int:
    """Add one failure (or one refusal) to the window's row; the row's new count of it."""
    failures, refused = (1, 0) if failed else (0, 1)
    counts = session.execute(text("""
        INSERT INTO gemini_sign_in_failures AS f
          (email, client_address, window_start, failures, refused, first_at, last_at,
           last_failed_at)
        VALUES (:email, :client, :window, :failures, :refused, :now, :now,
                CASE WHEN :failures > 0 THEN CAST(:now AS timestamp) END)
        ON CONFLICT (email, client_address, window_start) DO UPDATE SET
          failures = f.failures + EXCLUDED.failures,
          refused = f.refused + EXCLUDED.refused,
          last_at = EXCLUDED.last_at,
          last_failed_at = coalesce(EXCLUDED.last_failed_at, f.last_failed_at)
        RETURNING failures, refused"""), {
        "email": email, "client": client, "window": throttle.window_start(now),
        "failures": failures, "refused": refused, "now": now}).one()
    return counts.failures if failed else counts.refused


def sign_in(session: Session, email: str, password: str, *, bcrypt_rounds: int,
            client_address: str | None = None, now: dt.datetime | None = None,
            throttle: Throttle = THROTTLE) -> SignInResult:
    """Judge the throttle, then the password; record the outcome (never the password).
    Returns the outcome instead of raising, so the caller commits the record.

    Raises InvalidInput (nothing recorded) for a malformed email or an empty password.
    """
    email = normalise_email(email)
    if not password:
        raise InvalidInput("Enter your password.")
    client = client_label(client_address)
    # One attempt per account and per client at a time, so parallel guesses cannot slip past
    # the counts (always in this order, so two attempts never wait for each other in a cycle).
    for scope in (f"account:{email}", f"client:{client}"):
        session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"),
                        {"k": f"gemini-keys-sign-in:{scope}"})
    now = now or db_now(session)
    window = throttle.window_start(now)
    until = retry_at(session, email, client, now=now, throttle=throttle)
    if until is not None:
        if _count(session, email, client, now, failed=False, throttle=throttle) == 1:
            write_audit(session, action=Action.SIGN_IN_THROTTLED,
                        details={"email": email, "client": client,
                                 "window_start": window.isoformat(),
                                 "retry_at": until.isoformat()})
        return SignInResult(email, retry_at=until, message=wait_message(until, now))

    user = find_user(session, email)
    stored = (session.scalar(text("SELECT public.gemini_auth_password_hash(:id)"),
                             {"id": user.id}) if user else dummy_hash(bcrypt_rounds))
    matched = password_matches(password, stored)
    if user is not None and matched:
        # The owner's own typos from this client are forgotten; failures elsewhere stay.
        session.execute(delete(SignInFailure).where(SignInFailure.email == email,
                                                    SignInFailure.client_address == client))
        session.add(SignInAttempt(email=email, succeeded=True, attempted_at=now,
                                  client_address=client))
        session.execute(text("SELECT public.gemini_auth_record_sign_in(:id)"), {"id": user.id})
        session.flush()
        return SignInResult(email, user_id=user.id, message="Signed in.")

    if _count(session, email, client, now, failed=True, throttle=throttle) == 1:
        write_audit(session, action=Action.SIGN_IN_FAILED,
                    details={"email": email, "client": client,
                             "reason": "wrong_password" if user is not None else "unknown_email",
                             "window_start": window.isoformat(),
                             "note": "later failures in this window are counted, not logged"})
    until = retry_at(session, email, client, now=now, throttle=throttle)
    if until is None:
        return SignInResult(email)
    return SignInResult(email, retry_at=until,
                        message=f"{WRONG_CREDENTIALS} {wait_message(until, now)}")


@dataclass(frozen=True)
class FailureSummary:
    email: str
    client: str
    window_start: dt.datetime
    failures: int
    refused: int
    first_at: dt.datetime
    last_at: dt.datetime


def recent_failures(session: Session, *, since: dt.datetime, limit: int = 200
                    ) -> list[FailureSummary]:
    """Counted failed and refused sign-ins since `since`, newest first (service identity)."""
    rows = session.scalars(select(SignInFailure).where(SignInFailure.last_at > since)
                           .order_by(SignInFailure.last_at.desc()).limit(limit)).all()
    return [FailureSummary(r.email, r.client_address, r.window_start, r.failures, r.refused,
                           r.first_at, r.last_at) for r in rows]
