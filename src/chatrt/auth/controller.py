"""``/api/auth``: register, login, logout, me."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_204_NO_CONTENT

from chatrt.auth import service
from chatrt.auth.csrf import SESSION_COOKIE, issue_csrf_cookie
from chatrt.auth.guards import SESSION_REQUIRED
from chatrt.auth.passwords import Passwords
from chatrt.auth.schemas import LoginIn, RegisterIn, UserEnvelope, UserOut
from chatrt.auth.sessions import start_session
from chatrt.bus.base import EventBus
from chatrt.errors import error_responses
from chatrt.ratelimit.identity import client_ip, email_identity
from chatrt.ratelimit.limits import Limits
from chatrt.realtime import publish

AuthRequest = Request[UserOut, Any, Any]


class AuthController(Controller):
    path = "/api/auth"
    tags = ["auth"]

    @post(
        "/register",
        status_code=HTTP_201_CREATED,
        exclude_from_auth=True,
        exclude_from_csrf=True,
        summary="Create an account and sign in",
        responses=error_responses(400, 409, 413, 422, 429),
    )
    async def register(
        self,
        request: AuthRequest,
        data: JSONBody[RegisterIn],
        passwords: NamedDependency[Passwords],
        limits: NamedDependency[Limits],
    ) -> Response[UserEnvelope]:
        await limits.enforce(limits.rules.register_ip, client_ip(request.scope))
        user = await service.register(data, passwords)
        return _signed_in(request, user, HTTP_201_CREATED)

    @post(
        "/login",
        status_code=HTTP_200_OK,
        exclude_from_auth=True,
        exclude_from_csrf=True,
        summary="Sign in (the session id is always replaced)",
        responses=error_responses(400, 401, 413, 422, 429),
    )
    async def login(
        self,
        request: AuthRequest,
        data: JSONBody[LoginIn],
        passwords: NamedDependency[Passwords],
        limits: NamedDependency[Limits],
    ) -> Response[UserEnvelope]:
        # Every attempt counts, before the password is checked: per address, and per
        # account from any number of addresses.
        await limits.enforce(limits.rules.login_ip, client_ip(request.scope))
        await limits.enforce(limits.rules.login_email, email_identity(data.email))
        user = await service.authenticate(data, passwords)
        return _signed_in(request, user, HTTP_200_OK)

    @post(
        "/logout",
        status_code=HTTP_204_NO_CONTENT,
        summary="End the session everywhere",
        security=SESSION_REQUIRED,
        responses=error_responses(401, 403),
    )
    async def logout(self, request: AuthRequest, bus: NamedDependency[EventBus]) -> None:
        session_id = request.cookies.get(SESSION_COOKIE)
        request.clear_session()
        if session_id:
            # Open sockets of this session close too, on every instance.
            await publish.session_revoked(bus, request.user.id, session_id)

    @get(
        "/me",
        summary="The signed-in user",
        security=SESSION_REQUIRED,
        responses=error_responses(401),
    )
    async def me(self, request: AuthRequest) -> UserEnvelope:
        return UserEnvelope(user=request.user)


def _signed_in(request: AuthRequest, user: UserOut, status: int) -> Response[UserEnvelope]:
    start_session(request, user)
    response = Response(UserEnvelope(user=user), status_code=status)
    issue_csrf_cookie(request, response)
    return response
