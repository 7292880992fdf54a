"""Users and admins: auth.users (bcrypt, as Supabase stores it) and user_profiles.is_admin.

auth.users is reached only through migration 0005's gemini_auth_* functions, which only
service_role may call: on hosted Supabase no API role has a privilege on the table itself.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import delete, func, select, text
from sqlalchemy.orm import Session

from db.models import SignInFailure, UserProfile
from db.session import Actor, actor_of, apply_actor
from lib.audit.log import Action, write_audit
from lib.audit.queries import admin_right_changed_by
from lib.concurrency import Conflict, EditConflict, FieldChange
from lib.errors import Forbidden, InvalidInput, NotFound
from lib.users.passwords import check_password_strength, hash_password
from lib.users.sessions import end_user_sessions

EMAIL_PATTERN = re.compile(r"^[^@\s\x00-\x1f\x7f]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")


def normalise_email(email: str) -> str:
    """Trimmed, lower-cased; refuses anything that is not plainly an address."""
    email = (email or "").strip().lower()
    if len(email) > 255 or not EMAIL_PATTERN.match(email):
        raise InvalidInput("Enter a valid email address, like ada@example.com.")
    return email


@dataclass(frozen=True)
class Account:
    """A row of auth.users as the app may see it: never its password hash."""

    id: uuid.UUID
    email: str
    created_at: dt.datetime | None = None
    last_sign_in_at: dt.datetime | None = None
    has_password: bool = False


_ACCOUNTS = text("SELECT id, email, created_at, last_sign_in_at, has_password "
                 "FROM public.gemini_auth_users(:email)")


def accounts(session: Session, email: str | None = None) -> list[Account]:
    """Every user by email, or the one with `email` (any case); service identity only."""
    return [Account(*row) for row in session.execute(_ACCOUNTS, {"email": email})]


def find_user(session: Session, email: str) -> Account | None:
    found = accounts(session, email)
    return found[0] if found else None


def is_admin(session: Session, user_id: uuid.UUID) -> bool:
    return bool(session.scalar(select(UserProfile.is_admin).where(UserProfile.user_id == user_id)))


@contextmanager
def service_identity(session: Session) -> Iterator[None]:
    """Switch an app transaction to the service identity for auth.users, after proving in
    the same transaction that the signed-in user is an admin.

    auth.users is not writable (on Supabase not even readable) by `authenticated`, so RLS
    cannot guard it. Instead: the admin check runs in the database as the signed-in user and
    locks their profile row, so a concurrent revoke waits for this transaction to end; then
    the transaction continues as service_role acting for that admin (audit rows name them)
    and switches back afterwards. Service-role sessions (CLI, tests) pass straight through.
    """
    actor = actor_of(session)
    if actor.role == "service_role":
        yield
        return
    if actor.role != "authenticated" or actor.user_id is None:
        raise Forbidden("Only a signed-in admin can manage users.")
    is_admin_now = session.scalar(text(
        "SELECT is_admin FROM user_profiles WHERE user_id = auth.uid() "
        "AND public.gemini_is_admin() FOR UPDATE"))
    if not is_admin_now:
        raise Forbidden("Only an admin can manage users.")
    apply_actor(session, Actor.service(actor.source, actor.user_id, actor.email))
    yield
    # Not in a finally: after an error the transaction is aborted and rolls back anyway.
    apply_actor(session, actor)


@dataclass(frozen=True)
class UserSummary:
    id: uuid.UUID
    email: str
    is_admin: bool
    created_at: dt.datetime | None
    last_sign_in_at: dt.datetime | None


def list_users(session: Session) -> list[UserSummary]:
    """Every user with admin flag, creation and last sign-in, by email."""
    with service_identity(session):
        users = accounts(session)
        admins = set(session.scalars(select(UserProfile.user_id)
                                     .where(UserProfile.is_admin.is_(True))))
    return [UserSummary(u.id, u.email, u.id in admins, u.created_at, u.last_sign_in_at)
            for u in users]


def admin_exists(session: Session) -> bool:
    """Whether any admin exists (the sign-in page explains the first-run command if not)."""
    return bool(session.scalar(select(func.count()).select_from(UserProfile)
                               .where(UserProfile.is_admin.is_(True))))


def create_user(session: Session, *, email: str, password: str, bcrypt_rounds: int,
                admin: bool = False, via: str | None = None) -> Account:
    """Create a user (and profile); audited as user_created in the caller's transaction
    (`via`: how, when not the usual way, e.g. "setup code")."""
    email = normalise_email(email)
    check_password_strength(password)
    with service_identity(session):
        if find_user(session, email) is not None:
            raise InvalidInput(f"A user with the email {email} already exists.")
        # The id is chosen here: Supabase's auth.users has no default for it.
        user = Account(id=uuid.uuid4(), email=email, has_password=True)
        session.execute(text("SELECT public.gemini_auth_create_user(:id, :email, :hash)"),
                        {"id": user.id, "email": email,
                         "hash": hash_password(password, bcrypt_rounds)})
    session.add(UserProfile(user_id=user.id, is_admin=admin))
    session.flush()
    write_audit(session, action=Action.USER_CREATED, details={
        "email": email, "is_admin": admin, **({"via": via} if via else {})})
    return user


def _existing_user(session: Session, email: str) -> Account:
    with service_identity(session):
        user = find_user(session, email)
    if user is None:
        raise NotFound(f"No user with the email {email}.")
    return user


def check_admin_state(session: Session, user: Account, expected_admin: bool | None) -> None:
    """Optimistic concurrency for the Admins page: refuse (EditConflict, naming who changed
    it) when the user's admin right is no longer what the page showed. Locks the profile."""
    if expected_admin is None:
        return
    now = bool(session.scalar(select(UserProfile.is_admin)
                              .where(UserProfile.user_id == user.id).with_for_update()))
    if now != expected_admin:
        raise EditConflict([Conflict(user.email, (FieldChange("admin", expected_admin, now),),
                                     by=admin_right_changed_by(session, user.email))])


def set_admin(session: Session, *, email: str, admin: bool,
              expected_admin: bool | None = None) -> bool:
    """Grant or revoke admin; False (and no audit row) when nothing changes.

    expected_admin: the admin right the page showed for the user; a different one now
    refuses the change (EditConflict) rather than acting on a stale view.

    Refuses to revoke yourself or the last admin. Revoking locks every admin's profile row
    first (in a fixed order), so two admins revoking each other cannot leave none, and ends
    every session of the user (a copied cookie of theirs stops working too).
    """
    email = normalise_email(email)
    actor = actor_of(session)
    admins: list[uuid.UUID] = []
    if not admin:
        admins = list(session.scalars(
            select(UserProfile.user_id).where(UserProfile.is_admin.is_(True))
            .order_by(UserProfile.user_id).with_for_update()))
    user = _existing_user(session, email)
    check_admin_state(session, user, expected_admin)
    if not admin and actor.user_id == user.id:
        raise Forbidden("You cannot revoke your own admin access; ask another admin.")
    if not admin and user.id in admins and len(admins) <= 1:
        raise Forbidden(f"{email} is the last admin; grant admin to someone else first.")
    profile = session.scalar(select(UserProfile).where(UserProfile.user_id == user.id)
                             .with_for_update())
    before = bool(profile.is_admin) if profile is not None else False
    if before == admin:
        return False
    if profile is None:  # a user created outside this app (e.g. in Supabase) has no profile
        session.add(UserProfile(user_id=user.id, is_admin=admin))
    else:
        profile.is_admin = admin
    session.flush()
    details = {"email": email, "before": {"is_admin": before}, "after": {"is_admin": admin}}
    if not admin:
        with service_identity(session):
            details["sessions_ended"] = end_user_sessions(session, user.id)
    write_audit(session, action=Action.ADMIN_GRANTED if admin else Action.ADMIN_REVOKED,
                details=details)
    return True


def reset_password(session: Session, *, email: str, password: str,
                   bcrypt_rounds: int, expected_admin: bool | None = None) -> Account:
    """Set a new password; ends every session of the user (yourself included: sign in
    again) and lifts the account's sign-in throttle (its counted failures are forgotten).
    expected_admin: as for set_admin."""
    email = normalise_email(email)
    check_password_strength(password)
    user = _existing_user(session, email)
    check_admin_state(session, user, expected_admin)
    with service_identity(session):
        session.execute(text("SELECT public.gemini_auth_set_password(:id, :hash)"),
                        {"id": user.id, "hash": hash_password(password, bcrypt_rounds)})
        cleared = sum(session.scalars(delete(SignInFailure).where(SignInFailure.email == email)
                                      .returning(SignInFailure.failures)))
        ended = end_user_sessions(session, user.id)
    write_audit(session, action=Action.PASSWORD_RESET,
                details={"email": email, "failed_sign_ins_cleared": int(cleared),
                         "sessions_ended": ended})
    return user


def sign_out_everywhere(session: Session, *, email: str,
                        expected_admin: bool | None = None) -> int:
    """End every session of a user (all browsers, copied cookies too); how many were live.
    Audited as signed_out_everywhere even when none was (someone asked for it).
    expected_admin: as for set_admin."""
    email = normalise_email(email)
    user = _existing_user(session, email)
    check_admin_state(session, user, expected_admin)
    with service_identity(session):
        ended = end_user_sessions(session, user.id)
    write_audit(session, action=Action.SIGNED_OUT_EVERYWHERE,
                details={"email": email, "sessions_ended": ended})
    return ended
