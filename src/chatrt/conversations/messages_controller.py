"""``/api/conversations/{id}/messages``: history and sending."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.status_codes import HTTP_202_ACCEPTED

from chatrt.auth.guards import SESSION_REQUIRED
from chatrt.auth.schemas import UserOut
from chatrt.bus.base import EventBus
from chatrt.conversations import messages
from chatrt.conversations.schemas import MessageCreate, MessagePage, SendResult
from chatrt.conversations.submit import submit
from chatrt.errors import error_responses
from chatrt.generation.cancel import cancel
from chatrt.generation.runner import GenerationRunner
from chatrt.pagination import Cursor, Limit
from chatrt.settings import Settings
from chatrt.usage.budget import TokenBudget

AuthRequest = Request[UserOut, Any, Any]


class MessageController(Controller):
    path = "/api/conversations/{conversation_id:str}/messages"
    tags = ["messages"]
    security = SESSION_REQUIRED

    @get("/", summary="History, newest first", responses=error_responses(400, 401, 404, 422))
    async def history(
        self,
        request: AuthRequest,
        conversation_id: FromPath[UUID],
        settings: NamedDependency[Settings],
        limit: FromQuery[Limit] = 25,
        cursor: FromQuery[Cursor] = None,
    ) -> MessagePage:
        return await messages.list_page(
            request.user.id, conversation_id, limit, cursor, settings.server.default_locale
        )

    @post(
        "/",
        status_code=HTTP_202_ACCEPTED,
        summary="Send a message; the answer is generated in the background",
        responses=error_responses(400, 401, 403, 404, 409, 413, 422, 429),
    )
    async def send(
        self,
        request: AuthRequest,
        conversation_id: FromPath[UUID],
        data: JSONBody[MessageCreate],
        settings: NamedDependency[Settings],
        bus: NamedDependency[EventBus],
        generations: NamedDependency[GenerationRunner],
    ) -> SendResult:
        return await submit(
            request.user.id,
            conversation_id,
            data,
            settings.limits.max_content_chars,
            bus,
            generations,
            budget=TokenBudget.from_settings(settings),
        )

    @post(
        "/{message_id:str}/cancel",
        status_code=HTTP_202_ACCEPTED,
        summary="Stop an answer; it ends cancelled with the text so far",
        responses=error_responses(400, 401, 403, 404, 422),
    )
    async def cancel(
        self,
        request: AuthRequest,
        conversation_id: FromPath[UUID],
        message_id: FromPath[UUID],
        settings: NamedDependency[Settings],
        bus: NamedDependency[EventBus],
        generations: NamedDependency[GenerationRunner],
    ) -> None:
        await messages.get_message(request.user.id, conversation_id, message_id)
        await cancel(request.user.id, message_id, bus, generations, settings.server.default_locale)
