"""Server-side sessions whose id is never chosen by the client.

Litestar's server-side backend reuses whatever session id the cookie carries, so a planted id
would become the victim's logged-in session (session fixation). This backend issues a fresh id
whenever a session is written under an id the store does not know, and on every sign-in.
"""

from __future__ import annotations

from typing import Any, cast

import msgspec
from litestar.connection import ASGIConnection
from litestar.datastructures import Cookie, MutableScopeHeaders
from litestar.middleware.session.server_side import (
    ServerSideSessionBackend,
    ServerSideSessionConfig,
)
from litestar.types import Empty, Message, Scope, ScopeSession
from litestar.utils.dataclass import extract_dataclass_items

from chatrt.auth.schemas import UserOut

_ROTATE = "chatrt.rotate_session"
_KNOWN = "chatrt.session_known"


def start_session(connection: ASGIConnection[Any, Any, Any, Any], user: UserOut) -> None:
    """Sign ``user`` in under a brand-new session id (the old one, if any, is deleted).

    The user's fields ride in the session, so an authenticated request costs no user query:
    they never change after registration (the contract has no way to edit or delete a user).
    """
    cast(dict[str, Any], connection.scope)[_ROTATE] = True
    connection.set_session({"uid": str(user.id), "user": msgspec.to_builtins(user)})


class RotatingSessionBackend(ServerSideSessionBackend):
    async def load_from_connection(
        self, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> dict[str, Any]:
        data = await super().load_from_connection(connection)
        # Remember what was loaded, so an unchanged session costs no store write.
        cast(dict[str, Any], connection.scope)[_KNOWN] = self.serialize_data(data) if data else None
        return data

    async def store_in_message(
        self,
        scope_session: ScopeSession,
        message: Message,
        connection: ASGIConnection[Any, Any, Any, Any],
    ) -> None:
        scope = cast(dict[str, Any], connection.scope)
        store = self.config.get_store_from_app(cast(Scope, scope)["app"])
        headers = MutableScopeHeaders.from_message(message)
        cookie_params = dict(
            extract_dataclass_items(self.config, exclude_none=True, include=Cookie.__dict__.keys())
        )
        old_id = connection.cookies.get(self.config.key)
        if scope_session is Empty:
            if not old_id:
                return  # nothing to clear
            await self.delete(old_id, store=store)
            headers.add(
                "Set-Cookie",
                Cookie(
                    value="null", key=self.config.key, **(cookie_params | {"max_age": 0})
                ).to_header(header=""),
            )
            return
        known: bytes | None = scope.get(_KNOWN)
        rotate = bool(scope.get(_ROTATE))
        if not scope_session and known is None:
            return  # anonymous request: nothing to store, no cookie
        data = self.serialize_data(scope_session, cast(Scope, scope))
        if not rotate and known is not None and data == known:
            return
        session_id = old_id
        if rotate or known is None or not session_id:
            if old_id:
                await self.delete(old_id, store=store)
            session_id = self.generate_session_id()
        await self.set(session_id=session_id, data=data, store=store)
        headers.add(
            "Set-Cookie",
            Cookie(value=session_id, key=self.config.key, **cookie_params).to_header(header=""),
        )


class RotatingSessionConfig(ServerSideSessionConfig):
    _backend_class = RotatingSessionBackend
