// The composer: sends a message optimistically (shown at once, taken back with its text
// returned if the server refuses it) with a client_message_id that makes network retries
// safe, and Stop, which takes Send's place while an answer streams.

import { api, newId } from "./api.js";
import { say } from "./dom.js";

const SEND_RETRIES = 3; // network failures only; the client_message_id makes retries safe

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export class Composer {
  // `chat` is the ChatView: the open conversation, its messages, and adopting a new one.
  constructor({ dom, chat }) {
    this.dom = dom;
    this.chat = chat;
    this.sending = false;
    this.stopping = false;
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
  }

  async send() {
    const { chat } = this;
    const { input } = this.dom;
    const text = input.value;
    if (!text.trim() || this.sending || chat.log.streamingEntry()) return;
    say(this.dom.composerError, "");
    const clientId = newId();
    const epoch = chat.epoch;
    const pending = chat.log.addPending(text, clientId);
    chat.updateEmpty();
    chat.log.scrollToBottom();
    input.value = "";
    this.sending = true;
    this.update();
    try {
      let id = chat.conversationId;
      if (!id) {
        const { conversation } = await api("POST", "/api/conversations", {});
        chat.list.upsert(conversation);
        id = conversation.id;
        if (epoch === chat.epoch) chat.adopt(conversation);
      }
      const result = await this.postMessage(id, text, clientId);
      if (id === chat.conversationId) {
        chat.applyMessage(result.user_message, true);
        chat.applyMessage(result.assistant_message, true);
      }
    } catch (error) {
      if (chat.log.dropPending(pending)) {
        // Refused: the optimistic message is gone; give the text back to edit.
        chat.updateEmpty();
        if (!input.value) input.value = text;
        if (error.status !== 401) say(this.dom.composerError, error.message);
        input.focus();
      }
    } finally {
      this.sending = false;
      this.update();
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

  async stop() {
    const entry = this.chat.log.streamingEntry();
    if (!entry || this.stopping) return;
    this.stopping = true;
    this.update();
    try {
      await api("POST", `/api/conversations/${this.chat.conversationId}/messages/${entry.id}/cancel`);
    } catch (error) {
      if (error.status !== 401) say(this.dom.composerError, error.message);
    } finally {
      this.stopping = false;
      this.update();
    }
  }

  // Send or Stop, whichever fits; focus follows the button it was on.
  update() {
    const { dom } = this;
    const streaming = this.chat.log.streamingEntry() !== null;
    const focusOnSend = document.activeElement === dom.send;
    const focusOnStop = document.activeElement === dom.stop;
    dom.send.hidden = streaming;
    dom.send.disabled = this.sending;
    dom.stop.hidden = !streaming;
    dom.stop.disabled = this.stopping;
    if (streaming && focusOnSend) dom.stop.focus();
    if (!streaming && focusOnStop) dom.input.focus();
  }
}
