"""``/api/conversations``: create, list, read, update, soft delete, restore."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import UUID

from litestar import Controller, Request, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT

from chatrt.auth.guards import SESSION_REQUIRED
from chatrt.auth.schemas import UserOut
from chatrt.bus.base import EventBus
from chatrt.conversations import service, submit
from chatrt.conversations.schemas import (
    ConversationCreate,
    ConversationEnvelope,
    ConversationPage,
    ConversationPatch,
)
from chatrt.errors import error_responses
from chatrt.generation.runner import GenerationRunner
from chatrt.pagination import Cursor, Limit
from chatrt.realtime import publish
from chatrt.settings import Settings

AuthRequest = Request[UserOut, Any, Any]


class ConversationController(Controller):
    path = "/api/conversations"
    tags = ["conversations"]
    security = SESSION_REQUIRED

    @post(
        "/",
        status_code=HTTP_201_CREATED,
        summary="Start a conversation",
        responses=error_responses(400, 401, 403, 413, 422),
    )
    async def create(
        self,
        request: AuthRequest,
        data: JSONBody[ConversationCreate],
        bus: NamedDependency[EventBus],
    ) -> ConversationEnvelope:
        conversation = await service.create(request.user.id, data)
        await publish.conversation_updated(bus, request.user.id, conversation)
        return ConversationEnvelope(conversation)

    @get(
        "/",
        summary="My conversations, most recently active first",
        responses=error_responses(400, 401, 422),
    )
    async def list(
        self, request: AuthRequest, limit: FromQuery[Limit] = 25, cursor: FromQuery[Cursor] = None
    ) -> ConversationPage:
        return await service.list_page(request.user.id, limit, cursor)

    @get(
        "/{conversation_id:str}",
        summary="One conversation",
        responses=error_responses(400, 401, 404, 422),
    )
    async def read(
        self, request: AuthRequest, conversation_id: FromPath[UUID]
    ) -> ConversationEnvelope:
        return ConversationEnvelope(await service.get(request.user.id, conversation_id))

    @patch(
        "/{conversation_id:str}",
        summary="Change title, system prompt or model",
        responses=error_responses(400, 401, 403, 404, 413, 422),
    )
    async def update(
        self,
        request: AuthRequest,
        conversation_id: FromPath[UUID],
        data: JSONBody[ConversationPatch],
        bus: NamedDependency[EventBus],
    ) -> ConversationEnvelope:
        conversation = await service.patch(request.user.id, conversation_id, data)
        await publish.conversation_updated(bus, request.user.id, conversation)
        return ConversationEnvelope(conversation)

    @delete(
        "/{conversation_id:str}",
        status_code=HTTP_204_NO_CONTENT,
        summary="Soft-delete (restorable within the retention period)",
        responses=error_responses(400, 401, 403, 404, 422),
    )
    async def remove(
        self,
        request: AuthRequest,
        conversation_id: FromPath[UUID],
        bus: NamedDependency[EventBus],
        generations: NamedDependency[GenerationRunner],
    ) -> None:
        await submit.delete(request.user.id, conversation_id, bus, generations)

    @post(
        "/{conversation_id:str}/restore",
        status_code=200,
        summary="Undo a soft delete",
        responses=error_responses(400, 401, 403, 404, 422),
    )
    async def restore(
        self,
        request: AuthRequest,
        conversation_id: FromPath[UUID],
        settings: NamedDependency[Settings],
        bus: NamedDependency[EventBus],
    ) -> ConversationEnvelope:
        retention = timedelta(days=settings.limits.retention_days)
        conversation = await service.restore(request.user.id, conversation_id, retention)
        await publish.conversation_updated(bus, request.user.id, conversation)
        return ConversationEnvelope(conversation)
