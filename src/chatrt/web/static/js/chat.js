// The open conversation: opening it (resume, then subscribe, then the newest history page),
// older history by cursor, and the socket's events for it. Its parts: the header (title,
// rename, delete), the messages on screen, and the composer (send, Stop).

import { api, query } from "./api.js";
import { Composer } from "./composer.js";
import { say } from "./dom.js";
import { ConversationHeader } from "./header.js";
import { t } from "./i18n.js";
import { MessageLog } from "./messages.js";

const PAGE_SIZE = 30;
const POLL_MS = 2000;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export class ChatView {
  constructor({ dom, socket, list, toast, navigate }) {
    this.dom = dom;
    this.socket = socket;
    this.list = list;
    this.navigate = navigate;
    this.conversationId = null;
    this.conversation = null;
    this.opened = false;
    this.epoch = 0; // bumped whenever the view changes: late results of the old one are dropped
    this.olderCursor = null;
    this.historyReady = false;
    this.loadingOlder = false;
    this.flash = "";
    this.refreshTimer = null;
    this.log = new MessageLog({ list: dom.messages, scroll: dom.scroll });
    this.header = new ConversationHeader({ dom, chat: this, list, toast, navigate });
    this.composer = new Composer({ dom, chat: this });
    this.olderObserver = new IntersectionObserver(
      (seen) => {
        if (seen.some((entry) => entry.isIntersecting)) this.loadOlder();
      },
      { root: dom.scroll, rootMargin: "150px" },
    );
    this.olderObserver.observe(dom.older);
    dom.olderButton.addEventListener("click", () => this.loadOlder());
    document.addEventListener("keydown", (event) => {
      if (event.key !== "Escape" || event.defaultPrevented) return;
      if (this.header.renaming) {
        event.preventDefault();
        this.header.endRename(true);
      } else if (this.log.streamingEntry()) {
        event.preventDefault();
        this.composer.stop();
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
    this.header.endRename(false);
    say(this.dom.composerError, "");
  }

  clearMessages() {
    this.log.clear();
    this.olderCursor = null;
    this.historyReady = false;
    this.loadingOlder = false;
    this.composer.stopping = false;
    clearTimeout(this.refreshTimer);
    this.updateOlder();
    this.composer.update();
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
    this.header.render();
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
    for (const entry of this.log.followed()) {
      this.socket.send({ type: "resume", message_id: entry.id, after_seq: entry.answer.lastSeq });
    }
    this.socket.send({ type: "subscribe", conversation_id: this.conversationId });
  }

  onSocketOpen(reconnected) {
    if (!this.conversationId) return;
    this.subscribe();
    // Messages created and ended while the socket was down are only in the history.
    if (reconnected) this.loadNewest(this.epoch, false);
  }

  // A draft became a real conversation with its first send: it stays on screen as it is.
  adopt(conversation) {
    this.conversationId = conversation.id;
    this.conversation = conversation;
    this.header.render();
    this.subscribe();
    this.navigate(conversation.id);
  }

  // ---- history --------------------------------------------------------------------------

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
      this.header.render();
      const stick = first || this.log.nearBottom();
      for (const message of page.items) this.applyMessage(message, false);
      if (first) this.olderCursor = page.next_cursor;
      this.historyReady = true;
      this.updateOlder();
      this.updateEmpty();
      if (stick) this.log.scrollToBottom();
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
      this.log.keepPlace(() => {
        for (const message of page.items) this.applyMessage(message, false);
      });
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
        if (mine(frame.conversation_id) && frame.streaming.some((s) => !this.log.has(s.message_id))) {
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
      const entry = this.log.get(frame.message_id);
      if (entry) this.detach(entry);
    } else if (frame.ref === "subscribe" && frame.code === "conversation_not_found") {
      say(this.dom.notice, frame.message);
    }
  }

  conversationUpdated(conversation) {
    if (conversation.id !== this.conversationId) return;
    this.conversation = conversation;
    this.header.render();
  }

  conversationDeleted(id) {
    if (id !== this.conversationId || id === this.header.deleting) return;
    this.flash = t("chat.deletedElsewhere");
    this.navigate(null);
  }

  // ---- messages -------------------------------------------------------------------------

  applyMessage(message, live) {
    const stick = live && this.log.nearBottom();
    this.log.apply(message);
    this.composer.update();
    this.updateEmpty();
    if (stick) this.log.scrollToBottom();
  }

  applyDelta(frame) {
    let entry = this.log.get(frame.message_id);
    if (!entry) {
      entry = this.log.placeholder(frame.message_id);
      this.refreshSoon();
    }
    const stick = this.log.nearBottom();
    const outcome = entry.answer.delta(frame.seq, frame.delta);
    if (outcome === "ok") {
      this.log.render(entry);
      if (stick) this.log.scrollToBottom();
    } else if (outcome === "gap") {
      this.detach(entry);
    }
    this.composer.update();
  }

  // The live stream of this answer cannot be followed exactly any more: show the saved text
  // (REST checkpoints) until the final copy arrives, by event or by polling.
  async detach(entry) {
    if (entry.answer.detached) return;
    entry.answer.detached = true;
    this.log.render(entry);
    const epoch = this.epoch;
    while (epoch === this.epoch && entry.answer.streaming && this.log.get(entry.id) === entry) {
      await this.loadNewest(epoch, false);
      await sleep(POLL_MS);
    }
  }

  // ---- small view helpers ---------------------------------------------------------------

  updateOlder() {
    this.dom.older.hidden = !this.historyReady || !this.olderCursor;
  }

  updateEmpty() {
    this.dom.empty.hidden = this.log.size > 0 || !this.historyReady;
  }
}
