"""The chat page in headless Chromium against a real ``chatrt serve`` on the embedded default."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import Route, WebSocketRoute, expect

from tests.browser.conftest import PHONE, SCRIPTED, Web
from tests.support.browser import PASSWORD, Tab, assert_shown_exactly, demo_answer
from tests.support.fake_openai import FakeOpenAI, Script
from tests.support.instances import Instance
from tests.support.wait import poll_until

pytestmark = [pytest.mark.browser]

XSS = "<img src=x onerror=alert(1)>"


def test_sign_up_send_and_watch_the_answer_stream_to_the_end(
    web: Web, embedded: Instance, screenshot: Callable[[Tab, str], None]
) -> None:
    tab = web.tab(web.context(), embedded.url)
    screenshot(tab, "sign-in")
    tab.register(name="Somchai")
    expect(tab.page.locator("#user-name")).to_have_text("Somchai")
    question = "What can this page do?"
    tab.send(question)
    # The question shows at once, the answer streams in.
    expect(tab.page.locator("li.msg-user .msg-text")).to_have_text(question)
    tab.wait_streaming_text(60)
    screenshot(tab, "answer-streaming")
    final = tab.wait_answer("complete")

    assert final == demo_answer(question)
    history = tab.history(tab.conversation_id)
    assert [m["content"] for m in history] == [question, final]
    answer_id = history[1]["id"]
    assert_shown_exactly(tab, answer_id, final)
    streamed = [s for s in tab.recorded_answers() if s["status"] == "streaming"]
    assert len(streamed) > 5, "the answer did not render live"
    # The list shows the conversation with the answer as its preview.
    item = tab.page.locator(f"li.conv-item[data-id='{tab.conversation_id}']")
    expect(item.locator(".conv-preview")).to_have_text(final[:200])
    expect(item.locator("a")).to_have_attribute("aria-current", "page")
    screenshot(tab, "answer-complete")


def test_markup_from_users_and_the_model_renders_as_text(web: Web, embedded: Instance) -> None:
    tab = web.tab(web.context(), embedded.url)
    tab.register(name=XSS)
    tab.send(XSS)
    final = tab.wait_answer("complete")
    page = tab.page
    assert XSS in final  # the demo model quotes the question
    expect(page.locator("li.msg-user .msg-text")).to_have_text(XSS)
    expect(page.locator("#user-name")).to_have_text(XSS)
    page.locator("li.conv-item .conv-name", has_text="<img").wait_for()
    assert page.locator("img").count() == 0
    # Tab.check() at teardown also fails on any alert() dialog.


def test_reload_mid_answer_continues_with_nothing_missing_or_doubled(
    web: Web, scripted: Instance, fake_server: FakeOpenAI
) -> None:
    tokens = [f"w{i:02d} " for i in range(100)]
    fake_server.script(SCRIPTED, Script(tokens=tokens, delay_s=0.04))
    tab = web.tab(web.context(), scripted.url)
    tab.register()
    tab.send("Tell me a long story")
    before = tab.wait_streaming_text(40)
    assert len(before) < len("".join(tokens))
    tab.page.reload()

    tab.wait_signed_in()
    final = tab.wait_answer("complete")
    assert final == "".join(tokens)
    history = tab.history(tab.conversation_id)
    assert history[-1]["content"] == final
    # After the reload the page showed the answer streaming, and only ever prefixes of it.
    assert any(s["status"] == "streaming" for s in tab.recorded_answers())
    assert_shown_exactly(tab, history[-1]["id"], final)


def test_a_dropped_socket_reconnects_and_resumes_from_its_last_seq(
    web: Web, scripted: Instance, fake_server: FakeOpenAI
) -> None:
    tokens = [f"t{i:02d} " for i in range(60)]
    fake_server.script(SCRIPTED, Script(tokens=tokens, delay_s=0.04))
    context = web.context()
    sockets: list[tuple[WebSocketRoute, WebSocketRoute, list[dict[str, Any]]]] = []

    def proxy(ws: WebSocketRoute) -> None:
        # A transparent proxy that notes what the page sends and can cut the link.
        server = ws.connect_to_server()
        sent: list[dict[str, Any]] = []

        def forward(message: str | bytes) -> None:
            sent.append(json.loads(message))
            server.send(message)

        ws.on_message(forward)
        sockets.append((ws, server, sent))

    context.route_web_socket("**/ws", proxy)
    tab = web.tab(context, scripted.url)
    tab.register()
    tab.send("Go on")
    tab.wait_streaming_text(30)
    page_side, server_side, _ = sockets[-1]
    page_side.close(code=1012, reason="restarting")  # what an instance that restarts sends
    server_side.close()

    final = tab.wait_answer("complete")
    assert final == "".join(tokens)
    assert len(sockets) == 2
    first_frames = sockets[1][2][:2]
    # Resume before subscribe, from where the page was: it asks only for what it lacks.
    assert first_frames[0]["type"] == "resume"
    assert first_frames[0]["after_seq"] > 0
    assert first_frames[1] == {"type": "subscribe", "conversation_id": tab.conversation_id}
    history = tab.history(tab.conversation_id)
    assert_shown_exactly(tab, history[-1]["id"], final)


def test_the_stop_button_cancels_the_answer_and_keeps_its_text(
    web: Web, embedded: Instance
) -> None:
    tab = web.tab(web.context(), embedded.url)
    tab.register()
    tab.send("Please stop me")
    tab.wait_streaming_text(20)
    tab.page.click("#stop")
    final = tab.wait_answer("cancelled")
    answer = tab.last_answer()
    expect(answer.locator(".msg-status")).to_have_text("Stopped")
    assert 0 < len(final) < len(demo_answer("Please stop me"))
    assert tab.history(tab.conversation_id)[-1]["content"] == final
    expect(tab.page.locator("#send")).to_be_visible()
    expect(tab.page.locator("#stop")).to_be_hidden()


def test_a_refused_send_rolls_the_optimistic_message_back_with_the_servers_reason(
    web: Web, embedded: Instance
) -> None:
    tab = web.tab(web.context(), embedded.url)
    tab.register()
    tab.send("First question")
    tab.wait_answer("complete")
    held: list[Route] = []
    tab.page.route("**/messages", lambda route: held.append(route))
    too_long = "x" * 2001  # CHATRT_MAX_CONTENT_CHARS is 2000
    tab.send(too_long)
    # Shown at once, before the server has even seen it.
    pending = tab.page.locator("li.msg-user.pending")
    expect(pending.locator(".msg-text")).to_have_text(too_long)
    expect(tab.page.locator("#composer-input")).to_have_value("")
    poll_until(lambda: len(held) == 1)
    held[0].continue_()

    expect(tab.page.locator("#composer-error")).to_have_text("The message is too long.")
    expect(pending).to_have_count(0)
    expect(tab.page.locator("li.msg-user")).to_have_count(1)
    expect(tab.page.locator("#composer-input")).to_have_value(too_long)
    assert len(tab.history(tab.conversation_id)) == 2


def test_a_thai_browser_gets_thai_texts_and_thai_errors(
    web: Web, embedded: Instance, screenshot: Callable[[Tab, str], None]
) -> None:
    tab = web.tab(web.context(locale="th-TH"), embedded.url)
    page = tab.page
    expect(page.locator("html")).to_have_attribute("lang", "th")
    expect(page.locator("#login-form h2")).to_have_text("เข้าสู่ระบบ")
    page.fill("#login-email", "nobody@example.com")
    page.fill("#login-password", "wrong password")
    page.press("#login-password", "Enter")
    expect(page.locator("#login-error")).to_have_text("อีเมลหรือรหัสผ่านไม่ถูกต้อง")
    tab.register(name="สมชาย")
    tab.send("ก" * 2001)
    expect(page.locator("#composer-error")).to_have_text("ข้อความยาวเกินกำหนด")
    page.fill("#composer-input", "สวัสดีครับ")
    page.press("#composer-input", "Enter")
    tab.wait_answer("complete")
    screenshot(tab, "thai")


def test_two_tabs_see_each_others_messages_and_list_changes(web: Web, embedded: Instance) -> None:
    context = web.context()
    a = web.tab(context, embedded.url)
    a.register()
    b = web.tab(context, embedded.url)  # the same browser: already signed in
    b.wait_signed_in()

    a.send("Hello from tab A")
    conversation_id = a.conversation_id
    # B's list learns about it from the per-user events; B opens it mid-answer.
    b_item = b.page.locator(f"li.conv-item[data-id='{conversation_id}'] a")
    b_item.click()
    from_a = a.wait_answer("complete")
    assert b.wait_answer("complete") == from_a

    b.send("And hello from tab B")
    expect(a.page.locator("li.msg-user .msg-text").last).to_have_text("And hello from tab B")
    expect(a.answers()).to_have_count(2)
    assert a.wait_answer("complete") == demo_answer("And hello from tab B")
    assert b.wait_answer("complete") == demo_answer("And hello from tab B")

    # Rename in A: B's list and header follow.
    a.page.click("#rename")
    a.page.fill("#rename-input", "Renamed in A")
    a.page.press("#rename-input", "Enter")
    expect(b.page.locator("#conv-title")).to_have_text("Renamed in A")
    expect(b_item.locator(".conv-name")).to_have_text("Renamed in A")

    # Delete in A: gone from B too, and B says why; Undo in A brings it back everywhere.
    a.page.click("#delete")
    expect(b_item).to_have_count(0)
    expect(b.page.locator("#conv-notice")).to_have_text(
        "This conversation was deleted in another window."
    )
    a.page.click("#toast-action")
    expect(b_item).to_have_count(1)
    expect(a.page.locator("#conv-title")).to_have_text("Renamed in A")
    expect(a.page.locator("li.msg-assistant")).to_have_count(2)


def test_an_ended_session_sends_every_tab_to_sign_in(web: Web, embedded: Instance) -> None:
    context = web.context()
    a = web.tab(context, embedded.url)
    email = a.register()
    a.send("Keep this")
    conversation_id = a.conversation_id
    b = web.tab(context, embedded.url)
    b.wait_signed_in()
    b.page.click("#logout")
    expect(b.page.locator("#auth-notice")).to_have_text("You are signed out.")
    # A's socket is closed 4401 by the server: A says so and asks to sign in again.
    expect(a.page.locator("#auth-notice")).to_have_text(
        "Your session has ended. Please sign in again."
    )
    expect(a.page.locator("#login-form")).to_be_visible()
    # Signing in again brings the user back to where they were.
    a.page.fill("#login-email", email)
    a.page.fill("#login-password", PASSWORD)
    a.page.press("#login-password", "Enter")
    a.wait_signed_in()
    assert a.conversation_id == conversation_id
    expect(a.page.locator("li.msg-user .msg-text")).to_have_text("Keep this")

    # The same through REST: the session cookie is gone when the page next asks for something.
    c = web.tab(web.context(), embedded.url)
    c.register()
    c.page.context.clear_cookies()
    c.send("Anyone there?")
    expect(c.page.locator("#auth-notice")).to_have_text(
        "Your session has ended. Please sign in again."
    )


def test_the_conversation_list_loads_page_after_page_as_it_scrolls(
    web: Web, scripted: Instance
) -> None:
    tab = web.tab(web.context(), scripted.url)
    tab.register()
    for number in range(45):
        tab.api("POST", "/api/conversations", {"title": f"Topic {number:02d}"})
    tab.page.reload()
    tab.wait_signed_in()
    names = tab.page.locator("li.conv-item .conv-name")
    expect(names).to_have_count(20)  # one page; the rest waits below the fold
    for expected in (40, 45):
        tab.page.locator("#conv-scroll").evaluate("(s) => { s.scrollTop = s.scrollHeight; }")
        expect(names).to_have_count(expected)
    assert names.all_text_contents() == [f"Topic {n:02d}" for n in range(44, -1, -1)]
    expect(tab.page.locator("#conv-more")).to_be_hidden()


def test_history_loads_upward_by_cursor(
    web: Web, scripted: Instance, fake_server: FakeOpenAI
) -> None:
    fake_server.script(SCRIPTED, Script(tokens=["ok"]))
    tab = web.tab(web.context(), scripted.url)
    tab.register()
    conversation = tab.api("POST", "/api/conversations", {"title": "Long"})["conversation"]
    path = f"/api/conversations/{conversation['id']}/messages"
    for number in range(20):
        tab.api("POST", path, {"content": f"question {number:02d}"})
        poll_until(lambda: tab.api("GET", path + "?limit=1")["items"][0]["status"] != "streaming")
    tab.page.goto(f"{scripted.url}/#c={conversation['id']}")
    tab.wait_signed_in()
    texts = tab.page.locator("li.msg-user .msg-text")
    expect(tab.page.locator("li.msg")).to_have_count(30)  # the newest page
    expect(texts.last).to_have_text("question 19")
    tab.page.locator("#messages-scroll").evaluate("(s) => { s.scrollTop = 0; }")
    expect(tab.page.locator("li.msg")).to_have_count(40)
    assert texts.all_text_contents() == [f"question {n:02d}" for n in range(20)]
    indexes = tab.page.locator("li.msg").evaluate_all("(all) => all.map((li) => li.dataset.index)")
    assert indexes == [str(i) for i in range(40)]
    # The reader's place is kept: the older page went in above what was on screen.
    assert tab.page.locator("#messages-scroll").evaluate("(s) => s.scrollTop") > 0
    expect(tab.page.locator("#older")).to_be_hidden()


def test_keyboard_alone_signs_up_sends_and_stops(web: Web, embedded: Instance) -> None:
    tab = web.tab(web.context(), embedded.url)
    page = tab.page
    keyboard = page.keyboard
    expect(page.locator("#login-email")).to_be_focused()
    for _ in range(3):  # to the password, to "Sign in", to "Create an account"
        keyboard.press("Tab")
    expect(page.locator("#to-register")).to_be_focused()
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") != "none"
    keyboard.press("Enter")
    expect(page.locator("#register-name")).to_be_focused()
    keyboard.press("Tab")
    keyboard.type("keys@example.com".replace("keys", f"keys{id(tab)}"))
    keyboard.press("Tab")
    keyboard.type("a long password")
    keyboard.press("Enter")
    tab.wait_signed_in()
    expect(page.locator("#composer-input")).to_be_focused()
    keyboard.type("Typed, not clicked")
    keyboard.press("Enter")
    tab.wait_streaming_text(10)
    keyboard.press("Escape")
    tab.wait_answer("cancelled")
    expect(page.locator("#composer-input")).to_be_focused()


def test_a_phone_sized_screen_shows_the_list_and_the_conversation_in_turn(
    web: Web, embedded: Instance, screenshot: Callable[[Tab, str], None]
) -> None:
    tab = web.tab(web.context(viewport=PHONE), embedded.url)
    page = tab.page
    tab.register()
    expect(page.locator("#sidebar")).to_be_visible()
    expect(page.locator("#conversation")).to_be_hidden()
    page.click("#new-chat")
    expect(page.locator("#conversation")).to_be_visible()
    expect(page.locator("#sidebar")).to_be_hidden()
    tab.send("Hi from a phone")
    tab.wait_answer("complete")
    screenshot(tab, "phone-conversation")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.click("#back")
    expect(page.locator("#sidebar")).to_be_visible()
    expect(page.locator("li.conv-item")).to_have_count(1)
    expect(page.locator("#new-chat")).to_be_in_viewport()
    expect(page.locator("#logout")).to_be_in_viewport()
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    screenshot(tab, "phone-list")
