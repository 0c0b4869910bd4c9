// The open conversation's messages on screen: one list item per message in history order
// (message_index), each with the AnswerText that keeps its text exact, and the optimistic
// copies of messages still being sent, which become the server's messages when they arrive.

import { AnswerText } from "./answer.js";
import { el, setText } from "./dom.js";
import { answerError, t } from "./i18n.js";

const NEAR_BOTTOM_PX = 80;

// Placed messages (by index), then answers whose index we do not know yet, then unsent ones.
function rank(entry) {
  if (entry.pending) return 2;
  return entry.index === null || entry.index === undefined ? 1 : 0;
}

function comesAfter(a, b) {
  if (rank(a) !== rank(b)) return rank(a) > rank(b);
  return rank(a) === 0 && a.index > b.index;
}

export class MessageLog {
  constructor({ list, scroll }) {
    this.listEl = list;
    this.scroller = scroll;
    this.entries = new Map(); // message id (or "pending:<client id>") -> entry
  }

  get size() {
    return this.entries.size;
  }

  get(key) {
    return this.entries.get(key);
  }

  has(key) {
    return this.entries.has(key);
  }

  clear() {
    this.entries.clear();
    this.listEl.replaceChildren();
  }

  // A message from REST or an event: a new item, the optimistic copy it confirms, or news
  // about one we show (AnswerText decides whether it is newer than what we have).
  apply(message) {
    let entry = this.entries.get(message.id);
    if (!entry && message.role === "user" && message.client_message_id) {
      entry = this.adoptPending(message);
    }
    if (!entry) {
      entry = this.createEntry(message.id, message.role, message);
    } else if (entry.answer.apply(message)) {
      entry.message = message;
    }
    entry.index = message.message_index;
    entry.li.dataset.index = String(message.message_index);
    this.render(entry);
    this.position(entry);
    return entry;
  }

  // Deltas of an answer we have not seen created (it started before we subscribed).
  placeholder(id) {
    const entry = this.createEntry(id, "assistant", { status: "streaming", content: "" });
    this.position(entry);
    return entry;
  }

  createEntry(id, role, message, key = id) {
    const textEl = el("div", { class: "msg-text" });
    const statusEl = el("p", { class: "msg-status" });
    const roleEl = el("p", { class: "msg-role", text: role === "user" ? t("msg.you") : t("msg.assistant") });
    const li = el("li", { class: `msg msg-${role}`, dataset: { role } }, roleEl, textEl, statusEl);
    if (id) li.dataset.id = id;
    const entry = { key, id, role, index: null, message, answer: new AnswerText(message), li, textEl, statusEl, pending: false };
    this.entries.set(key, entry);
    return entry;
  }

  addPending(text, clientId) {
    const key = `pending:${clientId}`;
    const entry = this.createEntry(null, "user", { status: "complete", content: text }, key);
    entry.pending = true;
    entry.li.classList.add("pending");
    this.render(entry);
    this.position(entry);
    return entry;
  }

  // Take a refused message back out. False if it is no longer the optimistic copy.
  dropPending(entry) {
    if (this.entries.get(entry.key) !== entry) return false;
    this.entries.delete(entry.key);
    entry.li.remove();
    return true;
  }

  adoptPending(message) {
    const key = `pending:${message.client_message_id}`;
    const entry = this.entries.get(key);
    if (!entry) return null;
    this.entries.delete(key);
    entry.key = message.id;
    entry.id = message.id;
    entry.pending = false;
    entry.li.dataset.id = message.id;
    entry.li.classList.remove("pending");
    this.entries.set(message.id, entry);
    return entry;
  }

  render(entry) {
    const { answer, li } = entry;
    const status = entry.pending ? "sending" : answer.status;
    li.dataset.status = status;
    li.setAttribute("aria-busy", answer.streaming ? "true" : "false");
    setText(entry.textEl, answer.text);
    let note = "";
    if (entry.pending) note = t("msg.sending");
    else if (answer.streaming) note = answer.detached ? t("err.historyLost") : t("msg.streaming");
    else if (answer.status === "cancelled") note = t("msg.cancelled");
    else if (answer.status === "failed") note = `${t("msg.failed")}: ${answerError(entry.message?.error)}`;
    setText(entry.statusEl, note);
    entry.statusEl.hidden = !note;
  }

  // History order by message_index; answers not yet placed, then unsent messages, last.
  position(entry) {
    const list = this.listEl;
    const last = list.lastElementChild;
    const other = last === entry.li ? entry.li.previousElementSibling : last;
    const otherEntry = other ? this.entryOf(other) : null;
    if (!otherEntry || !comesAfter(otherEntry, entry)) {
      if (last !== entry.li) list.append(entry.li); // the usual case: newest at the end
      return;
    }
    for (const child of list.children) {
      const other = child === entry.li ? null : this.entryOf(child);
      if (other && comesAfter(other, entry)) {
        if (entry.li.nextElementSibling !== child) list.insertBefore(entry.li, child);
        return;
      }
    }
    list.append(entry.li);
  }

  entryOf(li) {
    return this.entries.get(li.dataset.id) ?? [...this.entries.values()].find((e) => e.li === li) ?? null;
  }

  streamingEntry() {
    for (const entry of this.entries.values()) {
      if (entry.role === "assistant" && entry.id && entry.answer.streaming) return entry;
    }
    return null;
  }

  // The answers a reconnected socket must resume: streaming ones we still follow live.
  *followed() {
    for (const entry of this.entries.values()) {
      if (entry.id && entry.answer.streaming && !entry.answer.detached) yield entry;
    }
  }

  // Run `insert` (which adds items above) without moving what the reader looks at.
  keepPlace(insert) {
    const scroller = this.scroller;
    const fromBottom = scroller.scrollHeight - scroller.scrollTop;
    insert();
    scroller.scrollTop = scroller.scrollHeight - fromBottom;
  }

  nearBottom() {
    const s = this.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < NEAR_BOTTOM_PX;
  }

  scrollToBottom() {
    this.scroller.scrollTop = this.scroller.scrollHeight;
  }
}
