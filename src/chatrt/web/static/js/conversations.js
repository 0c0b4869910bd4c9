// The conversation list: keyset pages fetched as the user scrolls, most recently active
// first, kept current by the per-user `conversation.updated` / `conversation.deleted` events.

import { api, query } from "./api.js";
import { el, say, setText, timeKey } from "./dom.js";
import { t } from "./i18n.js";

const PAGE_SIZE = 20;

// Newest first, ties by id descending: the server's list order.
function before(a, b) {
  const ka = timeKey(a.updated_at);
  const kb = timeKey(b.updated_at);
  if (ka !== kb) return ka > kb;
  return a.id > b.id;
}

export function conversationTitle(conversation) {
  return conversation.title && conversation.title.trim() ? conversation.title : t("list.untitled");
}

export class ConversationList {
  constructor({ list, empty, more, moreButton, scroller, error }) {
    this.listEl = list;
    this.emptyEl = empty;
    this.moreEl = more;
    this.errorEl = error;
    this.items = new Map(); // id -> { conversation, li }
    this.nextCursor = null;
    this.exhausted = false;
    this.loading = null;
    this.activeId = null;
    this.epoch = 0; // bumped by clear(): a page that arrives after it is dropped
    moreButton.addEventListener("click", () => this.loadMore());
    this.observer = new IntersectionObserver(
      (entries) => {
        if (entries.some((entry) => entry.isIntersecting)) this.loadMore();
      },
      { root: scroller, rootMargin: "200px" },
    );
    this.observer.observe(more);
  }

  get(id) {
    return this.items.get(id)?.conversation ?? null;
  }

  clear() {
    this.epoch += 1;
    this.items.clear();
    this.listEl.replaceChildren();
    this.nextCursor = null;
    this.exhausted = false;
    this.loading = null;
    this.updateFooter();
  }

  // The first page again, dropping what it no longer shows (after a reconnect, events may
  // have been missed, deletions included).
  async reload() {
    const epoch = ++this.epoch;
    this.loading = null;
    try {
      const page = await api("GET", `/api/conversations${query({ limit: PAGE_SIZE })}`);
      if (epoch !== this.epoch) return;
      const keep = new Set(page.items.map((c) => c.id));
      for (const id of [...this.items.keys()]) {
        if (!keep.has(id)) this.drop(id);
      }
      for (const conversation of page.items) this.place(conversation, true);
      this.nextCursor = page.next_cursor;
      this.exhausted = page.next_cursor === null;
      say(this.errorEl, "");
    } catch (error) {
      if (epoch === this.epoch) say(this.errorEl, error.message);
    }
    this.updateFooter();
  }

  loadMore() {
    if (this.loading || this.exhausted || this.nextCursor === null) return this.loading;
    const epoch = this.epoch;
    const cursor = this.nextCursor;
    this.loading = (async () => {
      try {
        const page = await api("GET", `/api/conversations${query({ limit: PAGE_SIZE, cursor })}`);
        if (epoch !== this.epoch) return;
        for (const conversation of page.items) this.place(conversation, true);
        this.nextCursor = page.next_cursor;
        this.exhausted = page.next_cursor === null;
        say(this.errorEl, "");
      } catch (error) {
        if (epoch === this.epoch) say(this.errorEl, error.message);
      } finally {
        if (epoch === this.epoch) this.loading = null;
        this.updateFooter();
      }
      // Still in view (a tall screen): keep filling.
      if (epoch === this.epoch && !this.exhausted) this.recheck();
    })();
    return this.loading;
  }

  recheck() {
    this.observer.unobserve(this.moreEl);
    this.observer.observe(this.moreEl);
  }

  // From an event or a response of ours: insert, update or move.
  upsert(conversation) {
    this.place(conversation, false);
    this.updateFooter();
  }

  remove(id) {
    this.drop(id);
    this.updateFooter();
  }

  setActive(id) {
    this.activeId = id;
    for (const [key, { li }] of this.items) {
      const link = li.firstChild;
      if (key === id) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
  }

  drop(id) {
    const item = this.items.get(id);
    if (!item) return;
    item.li.remove();
    this.items.delete(id);
  }

  place(conversation, fromPage) {
    const known = this.items.get(conversation.id);
    if (!known && !fromPage && !this.exhausted && this.nextCursor !== null) {
      // Older than everything loaded: it arrives with a later page, in its place.
      const last = this.listEl.lastElementChild;
      const lastItem = last ? this.items.get(last.dataset.id) : null;
      if (lastItem && before(lastItem.conversation, conversation)) return;
    }
    if (known && timeKey(known.conversation.updated_at) > timeKey(conversation.updated_at)) {
      return; // a stale copy (a page fetched before the event)
    }
    const item = known ?? { conversation, li: this.build(conversation.id) };
    item.conversation = conversation;
    this.items.set(conversation.id, item);
    this.render(item);
    this.position(item);
  }

  build(id) {
    const link = el("a", { class: "conv-link", href: `#c=${id}` },
      el("span", { class: "conv-name" }),
      el("span", { class: "conv-preview" }));
    return el("li", { class: "conv-item", dataset: { id } }, link);
  }

  render({ conversation, li }) {
    const link = li.firstChild;
    setText(link.querySelector(".conv-name"), conversationTitle(conversation));
    const last = conversation.last_message;
    let preview = t("list.noMessages");
    if (last) {
      // An empty answer: still streaming, or stopped before its first word (the list
      // cannot tell which).
      preview = last.preview || "…";
    }
    setText(link.querySelector(".conv-preview"), preview);
    if (conversation.id === this.activeId) link.setAttribute("aria-current", "page");
  }

  position(item) {
    let next = null;
    for (const other of this.listEl.children) {
      if (other === item.li) continue;
      const candidate = this.items.get(other.dataset.id);
      if (candidate && before(item.conversation, candidate.conversation)) {
        next = other;
        break;
      }
    }
    if (item.li.nextElementSibling !== next || !item.li.isConnected) {
      // Moving the focused link would lose focus; put it back.
      const hadFocus = item.li.contains(document.activeElement);
      this.listEl.insertBefore(item.li, next);
      if (hadFocus) item.li.firstChild.focus();
    }
  }

  updateFooter() {
    this.emptyEl.hidden = this.items.size > 0 || !this.exhausted;
    this.moreEl.hidden = this.exhausted || this.nextCursor === null;
  }
}
