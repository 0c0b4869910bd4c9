"""WebSocket frames (JSON text, one object each, tagged by ``type``).

Client frames are decoded by one shared decoder; a frame that does not fit becomes an
``error`` frame for the client, never an exception that closes the socket.
"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

import msgspec

from chatrt.conversations.schemas import ClientMessageId, Content, ConversationOut, MessageOut

Seq = Annotated[int, msgspec.Meta(ge=0)]


class _ClientFrame(msgspec.Struct, tag_field="type", forbid_unknown_fields=True, frozen=True):
    pass


class Subscribe(_ClientFrame, tag="subscribe", frozen=True):
    conversation_id: UUID


class Unsubscribe(_ClientFrame, tag="unsubscribe", frozen=True):
    conversation_id: UUID


class Send(_ClientFrame, tag="send", frozen=True):
    conversation_id: UUID
    content: Content
    client_message_id: ClientMessageId | None = None


class Cancel(_ClientFrame, tag="cancel", frozen=True):
    message_id: UUID


class Resume(_ClientFrame, tag="resume", frozen=True):
    message_id: UUID
    after_seq: Seq = 0


class Ping(_ClientFrame, tag="ping", frozen=True):
    pass


ClientFrame = Subscribe | Unsubscribe | Send | Cancel | Resume | Ping
CLIENT_FRAMES = msgspec.json.Decoder(ClientFrame)
KNOWN_TYPES = frozenset(("subscribe", "unsubscribe", "send", "cancel", "resume", "ping"))


class _ServerFrame(msgspec.Struct, tag_field="type", frozen=True):
    pass


class StreamingMessage(msgspec.Struct, frozen=True):
    message_id: UUID
    last_seq: int


class Subscribed(_ServerFrame, tag="subscribed", frozen=True):
    conversation_id: UUID
    streaming: list[StreamingMessage]


class Unsubscribed(_ServerFrame, tag="unsubscribed", frozen=True):
    conversation_id: UUID


class Pong(_ServerFrame, tag="pong", frozen=True):
    pass


class MessageCreated(_ServerFrame, tag="message.created", frozen=True):
    message: MessageOut


class MessageDelta(_ServerFrame, tag="message.delta", frozen=True):
    conversation_id: UUID
    message_id: UUID
    seq: int
    delta: str


class MessageDone(_ServerFrame, tag="message.done", frozen=True):
    message: MessageOut


class ConversationUpdated(_ServerFrame, tag="conversation.updated", frozen=True):
    conversation: ConversationOut


class ConversationDeleted(_ServerFrame, tag="conversation.deleted", frozen=True):
    conversation_id: UUID


class ErrorFrame(_ServerFrame, tag="error", frozen=True):
    code: str
    message: str
    retryable: bool = False
    retry_after: float | None = None
    ref: str | None = None
    # Additions to the contract: what exactly was wrong, and which answer it concerns.
    details: str | None = None
    message_id: UUID | None = None


ServerFrame = (
    Subscribed
    | Unsubscribed
    | Pong
    | MessageCreated
    | MessageDelta
    | MessageDone
    | ConversationUpdated
    | ConversationDeleted
    | ErrorFrame
)
ENCODER = msgspec.json.Encoder()
