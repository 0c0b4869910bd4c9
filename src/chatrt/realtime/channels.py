"""Bus channel and key names, and the envelope that travels on them.

Every bus payload is ``kind(1) | message id(16) | seq(8) | frame JSON``, so a receiving
instance can route, order and de-duplicate without decoding the frame it forwards. A
``message.done``'s seq is the answer's last logged seq (0 when the sender does not know it).
"""

from __future__ import annotations

import struct
from typing import Final, Literal
from uuid import UUID

import msgspec

CONTROL = "chatrt:control"

Kind = Literal[b"C", b"D", b"F", b"O", b"R"]
CREATED: Final = b"C"  # an assistant message began: its deltas will follow from seq 1
DELTA: Final = b"D"
DONE: Final = b"F"
OTHER: Final = b"O"
REVOKED: Final = b"R"  # a session ended: its sockets close (the frame is the session id)

_HEADER = struct.Struct(">c16sQ")
_NO_MESSAGE = bytes(16)


def conversation_channel(conversation_id: UUID) -> str:
    return f"chatrt:c:{conversation_id}"


def user_channel(user_id: UUID) -> str:
    return f"chatrt:u:{user_id}"


def message_log(message_id: UUID) -> str:
    return f"chatrt:log:{message_id}"


def lease_key(message_id: UUID) -> str:
    return f"chatrt:lease:{message_id}"


def cancel_key(message_id: UUID) -> str:
    return f"chatrt:cancel:{message_id}"


class Envelope(msgspec.Struct, frozen=True):
    kind: bytes
    message_id: UUID | None
    seq: int
    frame: bytes


def pack(kind: Kind, frame: bytes, message_id: UUID | None = None, seq: int = 0) -> bytes:
    ident = message_id.bytes if message_id is not None else _NO_MESSAGE
    return _HEADER.pack(kind, ident, seq) + frame


def unpack(data: bytes) -> Envelope:
    kind, ident, seq = _HEADER.unpack_from(data)
    message_id = UUID(bytes=ident) if ident != _NO_MESSAGE else None
    return Envelope(kind, message_id, seq, data[_HEADER.size :])


class CancelSignal(msgspec.Struct, frozen=True, tag="cancel", tag_field="type"):
    message_id: UUID


CONTROL_DECODER = msgspec.json.Decoder(CancelSignal)
