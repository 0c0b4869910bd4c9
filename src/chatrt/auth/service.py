"""User accounts: create, authenticate, load."""

from __future__ import annotations

import uuid
from uuid import UUID

from chatrt.auth.passwords import Passwords
from chatrt.auth.schemas import LoginIn, RegisterIn, UserOut
from chatrt.clock import utcnow
from chatrt.db.errors import is_unique_violation
from chatrt.db.tables import User
from chatrt.errors import AppError

_USER_COLUMNS = (User.id, User.email, User.display_name, User.created_at)


async def register(data: RegisterIn, passwords: Passwords) -> UserOut:
    """Create a user; 409 ``email_taken`` when the (lower-cased) email exists."""
    email = data.email.strip().lower()
    now = utcnow()
    user = UserOut(
        id=uuid.uuid4(),
        email=email,
        display_name=(data.display_name or email.split("@")[0]).strip()[:100] or email[:100],
        created_at=now,
    )
    password_hash = await passwords.hash(data.password)
    try:
        await User.insert(
            User(
                id=user.id,
                email=user.email,
                password_hash=password_hash,
                display_name=user.display_name,
                created_at=now,
                updated_at=now,
            )
        )
    except Exception as exc:
        if is_unique_violation(exc):
            raise AppError(409, "email_taken") from None
        raise
    return user


async def authenticate(data: LoginIn, passwords: Passwords) -> UserOut:
    """The user for these credentials, or 401 ``invalid_credentials``.

    Unknown emails run one argon2 verification too, so both failures look and time alike.
    """
    row = (
        await User.select(*_USER_COLUMNS, User.password_hash)
        .where(User.email == data.email.strip().lower())
        .first()
    )
    password_hash = row.pop("password_hash") if row else None
    if not await passwords.verify(password_hash, data.password) or row is None:
        raise AppError(401, "invalid_credentials")
    return UserOut(**row)


async def get_user(user_id: UUID) -> UserOut | None:
    row = await User.select(*_USER_COLUMNS).where(User.id == user_id).first()
    return UserOut(**row) if row else None
