// The open conversation's header: its title, renaming it in place, and deleting it with an
// Undo that restores it.

import { api } from "./api.js";
import { conversationTitle } from "./conversations.js";
import { say, setText } from "./dom.js";
import { t } from "./i18n.js";

export class ConversationHeader {
  // `chat` is the ChatView, which knows the open conversation.
  constructor({ dom, chat, list, toast, navigate }) {
    this.dom = dom;
    this.chat = chat;
    this.list = list;
    this.toast = toast;
    this.navigate = navigate;
    this.deleting = null; // deleted in this tab: its conversation.deleted event is no news
    dom.rename.addEventListener("click", () => this.startRename());
    dom.renameCancel.addEventListener("click", () => this.endRename(true));
    dom.renameForm.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submitRename();
    });
    dom.remove.addEventListener("click", () => this.remove());
  }

  get renaming() {
    return !this.dom.renameForm.hidden;
  }

  render() {
    const { dom, chat } = this;
    setText(dom.title, chat.conversation ? conversationTitle(chat.conversation) : t("chat.newTitle"));
    dom.actions.hidden = !chat.conversationId || !dom.renameForm.hidden;
  }

  startRename() {
    if (!this.chat.conversationId) return;
    const { dom } = this;
    dom.renameInput.value = this.chat.conversation?.title ?? "";
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
    this.render();
    if (refocus && !dom.actions.hidden) dom.rename.focus();
  }

  async submitRename() {
    const { chat } = this;
    const id = chat.conversationId;
    const title = this.dom.renameInput.value.trim();
    try {
      const { conversation } = await api("PATCH", `/api/conversations/${id}`, { title: title || null });
      this.list.upsert(conversation);
      if (id === chat.conversationId) {
        chat.conversation = conversation;
        say(this.dom.headerError, "");
        this.endRename(true);
      }
    } catch (error) {
      if (error.status !== 401) say(this.dom.headerError, error.message);
    }
  }

  async remove() {
    const id = this.chat.conversationId;
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
}
