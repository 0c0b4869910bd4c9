"""Naming a conversation after its first answer."""

from __future__ import annotations

import asyncio

from chatrt.bus.base import EventBus
from chatrt.conversations import service as conversations
from chatrt.db.tables import Conversation
from chatrt.generation.job import Job
from chatrt.providers.base import PromptMessage, TextDelta
from chatrt.providers.chain import ProviderChain
from chatrt.providers.demo import DEMO_PROVIDER
from chatrt.realtime import publish

TITLE_WORDS = 6
TITLE_CHARS = 60
TITLE_TIMEOUT_S = 15.0
_INSTRUCTION = (
    "Write a short title, at most six words, for a conversation that starts with the user's "
    "message below. Use the language of the message. Answer with the title only."
)


def first_words(question: str) -> str:
    """The question's first words, as a fallback title."""
    words = question.split()
    title = " ".join(words[:TITLE_WORDS])
    if len(title) > TITLE_CHARS:
        title = title[: TITLE_CHARS - 1].rstrip() + "…"
    return title or "…"


async def _ask_model(job: Job, chain: ProviderChain) -> str:
    prompt = [
        PromptMessage(role="system", content=_INSTRUCTION),
        PromptMessage(role="user", content=job.question[:2000]),
    ]
    parts: list[str] = []
    async for event in chain.stream(prompt, job.model):
        if isinstance(event, TextDelta):
            parts.append(event.text)
    title = " ".join("".join(parts).split()).strip(" \"'“”«»")
    return title[:TITLE_CHARS]


async def name_conversation(
    job: Job, chain: ProviderChain, provider: str | None, bus: EventBus
) -> None:
    """Give an untitled conversation a title; the owner's sockets hear about it."""
    title = ""
    if provider is not None and provider != DEMO_PROVIDER:
        try:
            title = await asyncio.wait_for(_ask_model(job, chain), TITLE_TIMEOUT_S)
        except Exception:
            title = ""
    title = title or first_words(job.question)
    updated = (
        await Conversation.update({Conversation.title: title})
        .where(
            Conversation.id == job.conversation_id,
            Conversation.title.is_null(),
            Conversation.status == "active",
        )
        .returning(Conversation.id)
    )
    if updated:
        conversation = await conversations.get(job.user_id, job.conversation_id)
        await publish.conversation_updated(bus, job.user_id, conversation)
