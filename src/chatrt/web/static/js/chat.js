// The open conversation: its history (loaded upward by cursor), live answers, the composer
// (optimistic sends with a client_message_id), Stop, rename and delete.

import { AnswerText } from "./answer.js";
import { api, newId, query } from "./api.js";
import { conversationTitle } from "./conversations.js";
import { el, say, setText } from "./dom.js";
import { answerError, t } from "./i18n.js";

const PAGE_SIZE = 30;
const SEND_RETRIES = 3; // network failures only; the client_message_id makes retries safe
const POLL_MS = 2000;
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

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export class ChatView {
  constructor({ dom, socket, list, toast, navigate }) {
    this.dom = dom;
    this.socket = socket;
    this.list = list;
    this.toast = toast;
    this.navigate = navigate;
    this.conversationId = null;
    this.conversation = null;
    this.opened = false;
    this.epoch = 0; // bumped whenever the view changes: late results of the old one are dropped
    this.entries = new Map(); // message id (or "pending:<client id>") -> entry
    this.olderCursor = null;
    this.historyReady = false;
    this.loadingOlder = false;
    this.sending = false;
    this.stopping = false;
    this.deleting = null;
    this.flash = "";
    this.refreshTimer = null;
    this.olderObserver = new IntersectionObserver(
      (seen) => {
        if (seen.some((entry) => entry.isIntersecting)) this.loadOlder();
      },
      { root: dom.scroll, rootMargin: "150px" },
    );
    this.olderObserver.observe(dom.older);
    this.bindEvents();
  }

  bindEvents() {
    const { dom } = this;
    dom.composer.addEventListener("submit", (event) => {
      event.preventDefault();
      this.send();
    });
    dom.input.addEventListener("keydown", (event) => {
      // isComposing: Enter that confirms an input-method candidate (Thai, CJK) is not a send.
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing && event.keyCode !== 229) {
        event.preventDefault();
        this.send();
      }
    });
    dom.stop.addEventListener("click", () => this.stop());
    dom.olderButton.addEventListener("click", () => this.loadOlder());
    dom.rename.addEventListener("click", () => this.startRename());
    dom.renameCancel.addEventListener("click", () => this.endRename(true));
    dom.renameForm.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submitRename();
    });
    dom.remove.addEventListener("click", () => this.remove());
    document.addEventListener("keydown", (event) => {
      if (event.key !== "Escape" || event.defaultPrevented) return;
      if (!this.dom.renameForm.hidden) {
        event.preventDefault();
        this.endRename(true);
      } else if (this.streamingEntry()) {
        event.preventDefault();
        this.stop();
      }
    });
  }

  // ---- opening and closing ------------------------------------------------------------

  reset() {
    if (this.conversationId) this.socket.send({ type: "unsubscribe", conversation_id: this.conversationId });
    this.epoch += 1;
    this.conversationId = null;
    this.conversation = null;
    this.opened = false;
    this.clearMessages();
    this.endRename(false);
    say(this.dom.composerError, "");
  }

  clearMessages() {
    this.entries.clear();
    this.dom.messages.replaceChildren();
    this.olderCursor = null;
    this.historyReady = false;
    this.loadingOlder = false;
    this.stopping = false;
    clearTimeout(this.refreshTimer);
    this.updateOlder();
    this.updateComposer();
    this.updateEmpty();
  }

  async open(id) {
    const flash = this.flash;
    this.flash = "";
    this.reset();
    const epoch = this.epoch;
    this.conversationId = id;
    this.opened = true;
    this.conversation = id ? this.list.get(id) : null;
    say(this.dom.notice, flash);
    say(this.dom.headerError, "");
    this.renderHeader();
    if (!id) {
      this.historyReady = true;
      this.updateEmpty();
      return;
    }
    this.subscribe();
    await this.loadNewest(epoch, true);
  }

  // Resume every answer we follow from its last seq, THEN subscribe: the protocol's rule for
  // a client that reconnects mid-answer, so it receives only what it lacks.
  subscribe() {
    if (!this.conversationId) return;
    for (const entry of this.entries.values()) {
      if (entry.id && entry.answer.streaming && !entry.answer.detached) {
        this.socket.send({ type: "resume", message_id: entry.id, after_seq: entry.answer.lastSeq });
      }
    }
    this.socket.send({ type: "subscribe", conversation_id: this.conversationId });
  }

  onSocketOpen(reconnected) {
    if (!this.conversationId) return;
    this.subscribe();
    // Messages created and ended while the socket was down are only in the history.
    if (reconnected) this.loadNewest(this.epoch, false);
  }

  async loadNewest(epoch, first) {
    const id = this.conversationId;
    try {
      const [envelope, page] = await Promise.all([
        api("GET", `/api/conversations/${id}`),
        api("GET", `/api/conversations/${id}/messages${query({ limit: PAGE_SIZE })}`),
      ]);
      if (epoch !== this.epoch) return;
      this.conversation = envelope.conversation;
      this.list.upsert(envelope.conversation);
      this.renderHeader();
      const stick = first || this.nearBottom();
      for (const message of page.items) this.applyMessage(message, false);
      if (first) this.olderCursor = page.next_cursor;
      this.historyReady = true;
      this.updateOlder();
      this.updateEmpty();
      if (stick) this.scrollToBottom();
      if (first) this.olderObserverRecheck();
    } catch (error) {
      if (epoch !== this.epoch) return;
      if (error.status === 404) {
        this.flash = t("chat.notFound");
        this.navigate(null);
      } else if (error.status !== 401) {
        say(this.dom.headerError, error.message);
      }
    }
  }

  refreshSoon() {
    clearTimeout(this.refreshTimer);
    const epoch = this.epoch;
    this.refreshTimer = setTimeout(() => {
      if (epoch === this.epoch) this.loadNewest(epoch, false);
    }, 300);
  }

  async loadOlder() {
    if (!this.historyReady || this.loadingOlder || !this.olderCursor) return;
    const epoch = this.epoch;
    const cursor = this.olderCursor;
    this.loadingOlder = true;
    try {
      const path = `/api/conversations/${this.conversationId}/messages${query({ limit: PAGE_SIZE, cursor })}`;
      const page = await api("GET", path);
      if (epoch !== this.epoch) return;
      // Keep what the reader looks at in place while older messages go in above it.
      const scroller = this.dom.scroll;
      const fromBottom = scroller.scrollHeight - scroller.scrollTop;
      for (const message of page.items) this.applyMessage(message, false);
      scroller.scrollTop = scroller.scrollHeight - fromBottom;
      this.olderCursor = page.next_cursor;
    } catch (error) {
      if (epoch === this.epoch && error.status !== 401) say(this.dom.headerError, error.message);
    } finally {
      if (epoch === this.epoch) {
        this.loadingOlder = false;
        this.updateOlder();
        this.olderObserverRecheck();
      }
    }
  }

  olderObserverRecheck() {
    this.olderObserver.unobserve(this.dom.older);
    this.olderObserver.observe(this.dom.older);
  }

  // ---- events from the socket -----------------------------------------------------------

  onFrame(frame) {
    const mine = (conversationId) => conversationId === this.conversationId && conversationId !== null;
    switch (frame.type) {
      case "subscribed":
        if (mine(frame.conversation_id) && frame.streaming.some((s) => !this.entries.has(s.message_id))) {
          this.refreshSoon(); // an answer started before we looked: fetch its question too
        }
        break;
      case "message.created":
      case "message.done":
        if (mine(frame.message.conversation_id)) this.applyMessage(frame.message, true);
        break;
      case "message.delta":
        if (mine(frame.conversation_id)) this.applyDelta(frame);
        break;
      case "error":
        this.onError(frame);
        break;
      default:
        break;
    }
  }

  onError(frame) {
    if (frame.code === "stream_history_lost" && frame.message_id) {
      const entry = this.entries.get(frame.message_id);
      if (entry) this.detach(entry);
    } else if (frame.ref === "subscribe" && frame.code === "conversation_not_found") {
      say(this.dom.notice, frame.message);
    }
  }

  conversationUpdated(conversation) {
    if (conversation.id !== this.conversationId) return;
    this.conversation = conversation;
    this.renderHeader();
  }

  conversationDeleted(id) {
    if (id !== this.conversationId || id === this.deleting) return;
    this.flash = t("chat.deletedElsewhere");
    this.navigate(null);
  }

  // ---- messages -------------------------------------------------------------------------

  applyMessage(message, live) {
    const stick = live && this.nearBottom();
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
    this.updateComposer();
    this.updateEmpty();
    if (stick) this.scrollToBottom();
  }

  applyDelta(frame) {
    let entry = this.entries.get(frame.message_id);
    if (!entry) {
      // Deltas of an answer we have not seen created (it started before we subscribed).
      const placeholder = { status: "streaming", content: "" };
      entry = this.createEntry(frame.message_id, "assistant", placeholder);
      this.position(entry);
      this.refreshSoon();
    }
    const stick = this.nearBottom();
    const outcome = entry.answer.delta(frame.seq, frame.delta);
    if (outcome === "ok") {
      this.render(entry);
      if (stick) this.scrollToBottom();
    } else if (outcome === "gap") {
      this.detach(entry);
    }
    this.updateComposer();
  }

  // The live stream of this answer cannot be followed exactly any more: show the saved text
  // (REST checkpoints) until the final copy arrives, by event or by polling.
  async detach(entry) {
    if (entry.answer.detached) return;
    entry.answer.detached = true;
    this.render(entry);
    const epoch = this.epoch;
    while (epoch === this.epoch && entry.answer.streaming && this.entries.get(entry.id) === entry) {
      await this.loadNewest(epoch, false);
      await sleep(POLL_MS);
    }
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

  createPending(text, clientId) {
    const key = `pending:${clientId}`;
    const entry = this.createEntry(null, "user", { status: "complete", content: text }, key);
    entry.pending = true;
    entry.li.classList.add("pending");
    this.render(entry);
    this.position(entry);
    this.updateEmpty();
    this.scrollToBottom();
    return entry;
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
    const list = this.dom.messages;
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

  // ---- sending and stopping -------------------------------------------------------------

  async send() {
    const { input } = this.dom;
    const text = input.value;
    if (!text.trim() || this.sending || this.streamingEntry()) return;
    say(this.dom.composerError, "");
    const clientId = newId();
    const epoch = this.epoch;
    const pending = this.createPending(text, clientId);
    input.value = "";
    this.sending = true;
    this.updateComposer();
    try {
      let id = this.conversationId;
      if (!id) {
        const { conversation } = await api("POST", "/api/conversations", {});
        this.list.upsert(conversation);
        id = conversation.id;
        if (epoch === this.epoch) this.adopt(conversation);
      }
      const result = await this.postMessage(id, text, clientId);
      if (id === this.conversationId) {
        this.applyMessage(result.user_message, true);
        this.applyMessage(result.assistant_message, true);
      }
    } catch (error) {
      if (this.entries.get(pending.key) === pending) {
        // Refused: take the optimistic message back and give the text back to edit.
        this.entries.delete(pending.key);
        pending.li.remove();
        this.updateEmpty();
        if (!input.value) input.value = text;
        if (error.status !== 401) say(this.dom.composerError, error.message);
        input.focus();
      }
    } finally {
      this.sending = false;
      this.updateComposer();
    }
  }

  async postMessage(id, content, clientId) {
    for (let attempt = 0; ; attempt += 1) {
      try {
        return await api("POST", `/api/conversations/${id}/messages`, { content, client_message_id: clientId });
      } catch (error) {
        if (error.status !== 0 || attempt >= SEND_RETRIES) throw error;
        await sleep(500 * 2 ** attempt);
      }
    }
  }

  // A draft became a real conversation with its first send: it stays on screen as it is.
  adopt(conversation) {
    this.conversationId = conversation.id;
    this.conversation = conversation;
    this.renderHeader();
    this.subscribe();
    this.navigate(conversation.id);
  }

  async stop() {
    const entry = this.streamingEntry();
    if (!entry || this.stopping) return;
    this.stopping = true;
    this.updateComposer();
    try {
      await api("POST", `/api/conversations/${this.conversationId}/messages/${entry.id}/cancel`);
    } catch (error) {
      if (error.status !== 401) say(this.dom.composerError, error.message);
    } finally {
      this.stopping = false;
      this.updateComposer();
    }
  }

  // ---- rename and delete ----------------------------------------------------------------

  renderHeader() {
    const { dom } = this;
    setText(dom.title, this.conversation ? conversationTitle(this.conversation) : t("chat.newTitle"));
    dom.actions.hidden = !this.conversationId || !dom.renameForm.hidden;
  }

  startRename() {
    if (!this.conversationId) return;
    const { dom } = this;
    dom.renameInput.value = this.conversation?.title ?? "";
    dom.renameForm.hidden = false;
    dom.title.hidden = true;
    dom.actions.hidden = true;
    dom.renameInput.focus();
    dom.renameInput.select();
  }

  endRename(refocus) {
    const { dom } = this;
    dom.renameForm.hidden = true;
    dom.title.hidden = false;
    this.renderHeader();
    if (refocus && !dom.actions.hidden) dom.rename.focus();
  }

  async submitRename() {
    const id = this.conversationId;
    const title = this.dom.renameInput.value.trim();
    try {
      const { conversation } = await api("PATCH", `/api/conversations/${id}`, { title: title || null });
      this.list.upsert(conversation);
      if (id === this.conversationId) {
        this.conversation = conversation;
        say(this.dom.headerError, "");
        this.endRename(true);
      }
    } catch (error) {
      if (error.status !== 401) say(this.dom.headerError, error.message);
    }
  }

  async remove() {
    const id = this.conversationId;
    if (!id) return;
    this.deleting = id;
    try {
      await api("DELETE", `/api/conversations/${id}`);
    } catch (error) {
      this.deleting = null;
      if (error.status !== 401) say(this.dom.headerError, error.message);
      return;
    }
    this.list.remove(id);
    this.toast.show(t("chat.deleted"), t("chat.undo"), () => this.restore(id));
    this.navigate(null);
  }

  async restore(id) {
    try {
      const { conversation } = await api("POST", `/api/conversations/${id}/restore`);
      this.list.upsert(conversation);
      this.navigate(conversation.id);
    } catch (error) {
      if (error.status !== 401) this.toast.show(error.message);
    } finally {
      if (this.deleting === id) this.deleting = null;
    }
  }

  // ---- small view helpers ---------------------------------------------------------------

  updateComposer() {
    const { dom } = this;
    const streaming = this.streamingEntry() !== null;
    const focusOnSend = document.activeElement === dom.send;
    const focusOnStop = document.activeElement === dom.stop;
    dom.send.hidden = streaming;
    dom.send.disabled = this.sending;
    dom.stop.hidden = !streaming;
    dom.stop.disabled = this.stopping;
    if (streaming && focusOnSend) dom.stop.focus();
    if (!streaming && focusOnStop) dom.input.focus();
  }

  updateOlder() {
    this.dom.older.hidden = !this.historyReady || !this.olderCursor;
  }

  updateEmpty() {
    this.dom.empty.hidden = this.entries.size > 0 || !this.historyReady;
  }

  nearBottom() {
    const s = this.dom.scroll;
    return s.scrollHeight - s.scrollTop - s.clientHeight < NEAR_BOTTOM_PX;
  }

  scrollToBottom() {
    this.dom.scroll.scrollTop = this.dom.scroll.scrollHeight;
  }
}
