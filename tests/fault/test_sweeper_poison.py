"""One orphaned answer the sweeper cannot end does not keep the others streaming."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

import pytest

from chatrt.app import create_app
from chatrt.bus.base import EventBus
from chatrt.clock import utcnow
from chatrt.db.tables import Message
from chatrt.generation.sweeper import Sweeper
from chatrt.realtime.channels import message_log
from tests.conftest import Backend, serving
from tests.support.evidence import Evidence

pytestmark = [pytest.mark.fault, pytest.mark.anyio]


async def test_a_row_that_cannot_be_ended_is_skipped_and_the_rest_are_ended(
    backend: Backend, caplog: pytest.LogCaptureFixture, evidence: Evidence
) -> None:
    settings = backend.settings()
    app = create_app(settings)
    async with serving(app) as new_client:
        alice = new_client()
        await alice.register()
        conversation_id = uuid.UUID((await alice.create_conversation())["id"])
        long_ago = utcnow() - timedelta(hours=1)
        # Oldest first, as the sweeper reads them: the poisoned row comes before the others.
        ids = [uuid.uuid4() for _ in range(3)]
        await Message.insert(
            *(
                Message(
                    id=message_id,
                    conversation_id=conversation_id,
                    message_index=n,
                    role="assistant",
                    status="streaming",
                    content="so far",
                    created_at=long_ago + timedelta(seconds=n),
                )
                for n, message_id in enumerate(ids)
            )
        )
        bus: EventBus = app.state.bus
        # A log entry that is not a delta envelope: reading the row's text fails.
        await bus.open_log(message_log(ids[0]), 60)
        await bus.append_and_publish(message_log(ids[0]), 1, "chatrt:c:x", b"\xffnot a frame", 60)

        sweeper = Sweeper(bus, settings)
        assert await sweeper.sweep_once() == 0, "the first pass only marks suspects"
        with caplog.at_level(logging.ERROR, logger="chatrt"):
            assert await sweeper.sweep_once() == 2
        rows = await Message.select(Message.id, Message.status, Message.error_code).where(
            Message.id.is_in(ids)
        )
        by_id = {row["id"]: (row["status"], row["error_code"]) for row in rows}
        assert by_id[ids[0]] == ("streaming", None)
        assert by_id[ids[1]] == by_id[ids[2]] == ("failed", "instance_lost")
        assert any(
            record.getMessage() == "could not end an orphaned answer" for record in caplog.records
        )
    evidence.record(
        "sweeper_skips_a_poisoned_row",
        backends=1,
        poisoned_rows=1,
        orphans_ended=sum(1 for i in ids[1:] if by_id[i][0] == "failed"),
        orphans_left_streaming=sum(1 for i in ids[1:] if by_id[i][0] == "streaming"),
    )
