"""Build a model prompt: the system prompt plus the newest messages that fit the budget."""

from __future__ import annotations

from uuid import UUID

from chatrt.db.tables import Message
from chatrt.providers.base import PromptMessage

# Enough history for any budget we allow; older turns are never sent.
_MAX_TURNS = 200


async def build_prompt(
    conversation_id: UUID, before_index: int, system_prompt: str | None, budget_chars: int
) -> list[PromptMessage]:
    """Oldest-first messages ending just before ``before_index`` that fit ``budget_chars``.

    The system prompt gets at most half the budget (its beginning is kept). The newest message
    is always included (truncated from the front if it alone is larger than what is left);
    failed or empty assistant turns are skipped.
    """
    rows = (
        await Message.select(Message.role, Message.content, Message.status)
        .where(Message.conversation_id == conversation_id, Message.message_index < before_index)
        .order_by(Message.message_index, ascending=False)
        .limit(_MAX_TURNS)
    )
    # The system prompt may take at most half, so the question itself always fits.
    system = (system_prompt or "")[: budget_chars // 2]
    budget = budget_chars - len(system)
    picked: list[PromptMessage] = []
    for row in rows:
        if row["role"] == "assistant" and (row["status"] == "failed" or not row["content"]):
            continue
        content: str = row["content"]
        if len(content) > budget:
            if not picked:
                picked.append(PromptMessage(role=row["role"], content=content[-max(budget, 1) :]))
            break
        budget -= len(content)
        picked.append(PromptMessage(role=row["role"], content=content))
    picked.reverse()
    if system:
        picked.insert(0, PromptMessage(role="system", content=system))
    return picked
