"""argon2id password hashing, run off the event loop in a small pool of its own."""

from __future__ import annotations

import anyio
import anyio.to_thread
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError


class Passwords:
    """Hash and verify passwords; one per app (its limiter belongs to the app's loop)."""

    def __init__(self, concurrency: int = 4) -> None:
        self._hasher = PasswordHasher()  # argon2id, RFC 9106 low-memory profile
        # Each hash holds 64 MiB; a small pool bounds memory and leaves threads for the rest.
        self._limiter = anyio.CapacityLimiter(concurrency)
        # Verified against when the email is unknown, so both paths cost one verification.
        self._dummy = self._hasher.hash("chatrt-timing-equaliser")

    async def hash(self, password: str) -> str:
        return await anyio.to_thread.run_sync(self._hasher.hash, password, limiter=self._limiter)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """True when ``password`` matches; a missing hash costs the same work and says False."""

        def check() -> bool:
            try:
                matched = self._hasher.verify(password_hash or self._dummy, password)
            except (VerificationError, InvalidHashError):
                return False
            return matched and password_hash is not None

        return await anyio.to_thread.run_sync(check, limiter=self._limiter)
