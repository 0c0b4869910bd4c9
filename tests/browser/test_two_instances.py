"""The chat page against two ``chatrt serve`` instances sharing PostgreSQL and Redis: one tab
on each, as a load balancer without sticky sessions would spread them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import Web
from tests.conftest import Backend
from tests.support.browser import assert_shown_exactly, demo_answer
from tests.support.instances import Instance

pytestmark = [pytest.mark.browser, pytest.mark.multi]


@pytest.fixture
def pair(postgres_backend: Backend, tmp_path: Path) -> Iterator[tuple[Instance, Instance]]:
    env = postgres_backend.defaults | postgres_backend.env
    # The demo model, slowed so that an answer streams for about four seconds.
    env |= {"CHATRT_DEMO_CHUNK_DELAY_MS": "80", "CHATRT_CHECKPOINT_INTERVAL_S": "0.3"}
    one, two = Instance(env, tmp_path, "one"), Instance(env, tmp_path, "two")
    with one, two:
        yield one, two


def test_tabs_on_two_instances_share_answers_lists_and_the_session(
    web: Web, pair: tuple[Instance, Instance]
) -> None:
    one, two = pair
    context = web.context()  # cookies are per host, not per port: one browser, two instances
    a = web.tab(context, one.url)
    a.register()
    b = web.tab(context, two.url)
    b.wait_signed_in()

    question = "Hello across instances"
    a.send(question)
    conversation_id = a.conversation_id
    b_item = b.page.locator(f"li.conv-item[data-id='{conversation_id}'] a")
    b_item.click()
    # B follows a generation that runs on instance one, and reloads in the middle of it.
    b.wait_streaming_text(30)
    b.page.reload()
    b.wait_signed_in()
    final = b.wait_answer("complete")
    assert final == a.wait_answer("complete") == demo_answer(question)
    history = b.history(conversation_id)
    assert [m["content"] for m in history] == [question, final]
    assert_shown_exactly(b, history[1]["id"], final)

    # B sends through instance two; A, on instance one, sees the question and the answer.
    b.send("And back")
    expect(a.page.locator("li.msg-user .msg-text").last).to_have_text("And back")
    expect(a.answers()).to_have_count(2)
    assert a.wait_answer("complete") == b.wait_answer("complete") == demo_answer("And back")

    # A renames on instance one; B's list follows through Redis.
    a.page.click("#rename")
    a.page.fill("#rename-input", "Across")
    a.page.press("#rename-input", "Enter")
    expect(b_item.locator(".conv-name")).to_have_text("Across")

    # Signing out on instance one ends the session on instance two at once.
    a.page.click("#logout")
    expect(b.page.locator("#auth-notice")).to_have_text(
        "Your session has ended. Please sign in again."
    )
