"""Headless Chromium (Debian's) driven by Playwright's sync API, and helpers for the chat page.

The browser cannot be downloaded here, so Playwright launches ``/usr/bin/chromium`` (or
``CHATRT_TEST_CHROMIUM``) with flags that keep it off the network: without them Chromium
keeps trying to reach Google's update, sync and safe-browsing servers.

``Tab`` wraps one page and records what would make a test meaningless or the page unsafe:
Content-Security-Policy violations, uncaught script errors and dialogs (an ``alert`` from
injected markup). ``Tab.check()`` fails on any of them.
"""

from __future__ import annotations

import itertools
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Dialog,
    Page,
    sync_playwright,
)

from chatrt.providers.base import PromptMessage
from chatrt.providers.demo import demo_reply

CHROMIUM = os.environ.get("CHATRT_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "a long password"
_emails = itertools.count()

# Records every text an assistant message shows, as the page shows it, in page order.
RECORD_ANSWERS = """
window.__answers = [];
const record = () => {
  for (const li of document.querySelectorAll("li.msg-assistant")) {
    const id = li.dataset.id || "";
    const status = li.dataset.status || "";
    const text = li.querySelector(".msg-text").textContent;
    const last = window.__answers.findLast((s) => s.id === id);
    if (!last || last.text !== text || last.status !== status) {
      window.__answers.push({ id, status, text });
    }
  }
};
new MutationObserver(record).observe(document, {
  subtree: true, childList: true, characterData: true, attributes: true,
});
"""


def chromium_available() -> bool:
    return shutil.which(CHROMIUM) is not None or os.path.exists(CHROMIUM)


@contextmanager
def chromium() -> Iterator[Browser]:
    """One headless Chromium (Playwright gives it a fresh, temporary user-data-dir)."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def new_email() -> str:
    return f"browser{next(_emails)}-{uuid.uuid4().hex[:8]}@example.com"


@dataclass
class Tab:
    """One page of the chat app at ``base_url`` and what went wrong in it."""

    page: Page
    base_url: str
    problems: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    @classmethod
    def open(cls, context: BrowserContext, base_url: str, path: str = "/") -> Tab:
        tab = cls(context.new_page(), base_url)
        tab.page.on("console", tab._on_console)
        tab.page.on("pageerror", lambda error: tab.problems.append(f"page error: {error}"))
        tab.page.on("dialog", tab._on_dialog)
        tab.page.goto(base_url + path)
        return tab

    def _on_console(self, message: ConsoleMessage) -> None:
        text = message.text
        if "Content Security Policy" in text or "Refused to" in text:
            self.problems.append(f"CSP: {text}")

    def _on_dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def check(self) -> None:
        assert self.problems == [], self.problems
        assert self.dialogs == [], self.dialogs

    # -- signing in ---------------------------------------------------------------------

    def register(self, email: str | None = None, name: str | None = None) -> str:
        email = email or new_email()
        page = self.page
        page.locator("#login-form").wait_for()
        page.click("#to-register")
        if name:
            page.fill("#register-name", name)
        page.fill("#register-email", email)
        page.fill("#register-password", PASSWORD)
        page.click("#register-form button[type=submit]")
        self.wait_signed_in()
        return email

    def wait_signed_in(self) -> None:
        self.page.locator("#chat-view").wait_for(state="visible")
        self.page.locator("#conn-status[data-state=open]").wait_for()

    # -- the conversation ---------------------------------------------------------------

    def send(self, text: str) -> None:
        self.page.fill("#composer-input", text)
        self.page.press("#composer-input", "Enter")

    @property
    def conversation_id(self) -> str:
        """The open conversation (the page puts it in the URL once it exists)."""
        self.page.wait_for_url("**/#c=*")
        return self.page.url.split("#c=", 1)[1]

    def answers(self) -> Any:
        return self.page.locator("li.msg-assistant")

    def last_answer(self) -> Any:
        return self.answers().last

    def wait_answer(self, status: str, timeout_s: float = 30) -> str:
        """The text of the newest answer once it has this status."""
        self.page.wait_for_function(
            """(status) => {
                const li = [...document.querySelectorAll("li.msg-assistant")].pop();
                return li && li.dataset.status === status;
            }""",
            arg=status,
            timeout=timeout_s * 1000,
        )
        text: str = self.last_answer().locator(".msg-text").text_content() or ""
        return text

    def wait_streaming_text(self, at_least: int, timeout_s: float = 20) -> str:
        """Wait until the newest answer streams and shows at least ``at_least`` characters."""
        self.page.wait_for_function(
            """(n) => {
                const li = [...document.querySelectorAll("li.msg-assistant")].pop();
                return li && li.dataset.status === "streaming"
                    && li.querySelector(".msg-text").textContent.length >= n;
            }""",
            arg=at_least,
            timeout=timeout_s * 1000,
        )
        text: str = self.last_answer().locator(".msg-text").text_content() or ""
        return text

    def recorded_answers(self) -> list[dict[str, str]]:
        recorded: list[dict[str, str]] = self.page.evaluate("window.__answers || []")
        return recorded

    # -- REST as this tab's user (the context's cookies) ----------------------------------

    def api(self, method: str, path: str, body: Any = None) -> Any:
        headers = {"accept-language": "en"}
        if method != "GET":
            cookies = {c["name"]: c["value"] for c in self.page.context.cookies(self.base_url)}
            headers["x-csrftoken"] = cookies.get("csrftoken", "")
        # A dict is sent as JSON with its content type.
        extra: dict[str, Any] = {} if body is None else {"data": body}
        response = self.page.request.fetch(
            self.base_url + path, method=method, headers=headers, **extra
        )
        assert response.ok, f"{method} {path}: {response.status} {response.text()}"
        return response.json() if response.status != 204 else None

    def history(self, conversation_id: str) -> list[dict[str, Any]]:
        """Every message of a conversation from REST, oldest first."""
        items: list[dict[str, Any]] = []
        cursor = ""
        while True:
            query = f"?limit=100&cursor={cursor}" if cursor else "?limit=100"
            page = self.api("GET", f"/api/conversations/{conversation_id}/messages{query}")
            items.extend(page["items"])
            cursor = page["next_cursor"]
            if not cursor:
                return sorted(items, key=lambda m: int(m["message_index"]))


def demo_answer(question: str) -> str:
    """What the offline demo model answers to this question."""
    return demo_reply([PromptMessage(role="user", content=question)])


def assert_shown_exactly(tab: Tab, message_id: str, final: str) -> None:
    """Every text the page showed for this answer was a prefix of its final content."""
    shown = [s for s in tab.recorded_answers() if s["id"] == message_id]
    assert shown, "the answer was never shown"
    for snapshot in shown:
        assert final.startswith(snapshot["text"]), (snapshot, final)
    assert shown[-1]["text"] == final
