"""Users and admins: auth.users (bcrypt, as Supabase stores it) and user_profiles.is_admin."""

from __future__ import annotations

import re
import uuid

import bcrypt
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.models import AuthUser, UserProfile
from lib.audit import Action, write_audit
from lib.errors import InvalidInput

EMAIL_PATTERN = re.compile(r"^[^@\s]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
MIN_PASSWORD_LENGTH = 12
COMMON_PASSWORDS = {"password1234", "123456789012", "qwertyuiopas", "adminadmin12",
                    "passwordpassword", "letmeinletmein"}


def normalise_email(email: str) -> str:
    """Trimmed, lower-cased; refuses anything that is not plainly an address."""
    email = (email or "").strip().lower()
    if len(email) > 255 or not EMAIL_PATTERN.match(email):
        raise InvalidInput("Enter a valid email address, like ada@example.com.")
    return email


def check_password_strength(password: str) -> None:
    """Refuse empty, short, one-character and well-known passwords (message never echoes it)."""
    if not password:
        raise InvalidInput("The password is empty.")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(f"The password must have at least {MIN_PASSWORD_LENGTH} characters.")
    if len(set(password)) < 4 or password.lower() in COMMON_PASSWORDS:
        raise InvalidInput("The password is too easy to guess; choose a longer, varied one.")


def hash_password(password: str) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt()).decode()


def password_matches(password: str, password_hash: str | None) -> bool:
    """bcrypt check that tolerates Supabase's $2a$ hashes and missing hashes."""
    if not password_hash:
        return False
    try:
        return bcrypt.checkpw(password.encode(), password_hash.encode())
    except ValueError:
        return False


def find_user(session: Session, email: str) -> AuthUser | None:
    return session.scalar(select(AuthUser).where(func.lower(AuthUser.email) == email.lower()))


def is_admin(session: Session, user_id: uuid.UUID) -> bool:
    return bool(session.scalar(select(UserProfile.is_admin).where(UserProfile.user_id == user_id)))


def create_user(session: Session, *, email: str, password: str, admin: bool = False) -> AuthUser:
    """Create a user (and profile); audited as user_created in the caller's transaction."""
    email = normalise_email(email)
    check_password_strength(password)
    if find_user(session, email) is not None:
        raise InvalidInput(f"A user with the email {email} already exists.")
    user = AuthUser(email=email, encrypted_password=hash_password(password))
    session.add(user)
    session.flush()
    session.add(UserProfile(user_id=user.id, is_admin=admin))
    session.flush()
    write_audit(session, action=Action.USER_CREATED, details={"email": email, "is_admin": admin})
    return user
