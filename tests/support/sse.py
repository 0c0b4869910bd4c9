"""Reading a Server-Sent Events answer stream the way a browser would."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class SseEvent:
    name: str
    data: dict[str, Any]
    at: float  # time.monotonic() when it arrived


async def read_sse(
    http: httpx.AsyncClient,
    url: str,
    events: list[SseEvent],
    *,
    params: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> None:
    """Append each event of the stream to ``events`` until ``message.done`` (or the end).

    Appending as they arrive lets a test running this in a task watch progress.
    """
    async with http.stream("GET", url, params=params, headers=headers) as response:
        assert response.status_code == 200, response.status_code
        assert response.headers["content-type"].startswith("text/event-stream")
        name = ""
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                events.append(SseEvent(name, json.loads(line[6:]), time.monotonic()))
                if name == "message.done":
                    return


def sse_deltas(events: list[SseEvent]) -> list[dict[str, Any]]:
    return [event.data for event in events if event.name == "message.delta"]
