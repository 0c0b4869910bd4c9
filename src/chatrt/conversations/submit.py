"""The full effect of a send, shared by REST and the WebSocket.

Persist both messages, tell every subscriber, start the answer, and refresh the owner's
conversation lists. A repeated ``client_message_id`` returns the first result and does
nothing else.
"""

from __future__ import annotations

from functools import partial
from uuid import UUID

from chatrt.bus.base import EventBus
from chatrt.conversations import messages, service
from chatrt.conversations.schemas import MessageCreate, SendResult
from chatrt.errors import AppError
from chatrt.generation.job import Job
from chatrt.generation.runner import GenerationRunner
from chatrt.realtime import publish
from chatrt.usage.budget import TokenBudget


async def submit(
    user_id: UUID,
    conversation_id: UUID,
    data: MessageCreate,
    max_content_chars: int,
    bus: EventBus,
    generations: GenerationRunner,
    budget: TokenBudget | None = None,
) -> SendResult:
    if generations.closing:
        raise AppError(503, "shutting_down", headers={"Retry-After": "1"})
    admit = partial(budget.admit, user_id, conversation_id) if budget else None
    outcome = await messages.send(user_id, conversation_id, data, max_content_chars, admit)
    result = SendResult(user_message=outcome.user, assistant_message=outcome.assistant)
    if not outcome.created:
        return result
    try:
        # Created first, so no subscriber sees a delta or a done before its message.
        await publish.message_created(bus, outcome.user)
        await publish.message_created(bus, outcome.assistant)
    finally:
        generations.start(
            Job(
                user_id=user_id,
                conversation_id=conversation_id,
                message_id=outcome.assistant.id,
                message_index=outcome.assistant.message_index,
                system_prompt=outcome.system_prompt,
                model=outcome.model,
                title=outcome.title,
                question=data.content,
            )
        )
    await publish.conversation_updated(bus, user_id, await service.get(user_id, conversation_id))
    return result


async def delete(
    user_id: UUID, conversation_id: UUID, bus: EventBus, generations: GenerationRunner
) -> None:
    """Soft-delete, cancel its running answer, and tell the owner's other tabs."""
    await service.soft_delete(user_id, conversation_id)
    await generations.cancel_conversation(
        conversation_id, await messages.streaming_ids(conversation_id)
    )
    await publish.conversation_deleted(bus, user_id, conversation_id)
