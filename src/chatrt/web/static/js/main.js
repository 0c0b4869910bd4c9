// The page: signing in and out, routing by the URL's hash (#c=<id> opens a conversation,
// #new a draft), and one WebSocket whose events feed the list and the open conversation.

import { api, onSessionLost } from "./api.js";
import { ChatView } from "./chat.js";
import { ConversationList } from "./conversations.js";
import { byId, say } from "./dom.js";
import { t, translatePage } from "./i18n.js";
import { Realtime } from "./socket.js";

const TOAST_MS = 10000;
const CONVERSATION_HASH = /^#c=([0-9a-fA-F-]{36})$/;
const wide = window.matchMedia("(min-width: 700px)");

class Toast {
  constructor() {
    this.box = byId("toast");
    this.text = byId("toast-text");
    this.button = byId("toast-action");
    this.timer = null;
    this.action = null;
    this.button.addEventListener("click", () => {
      const action = this.action;
      this.hide();
      if (action) action();
    });
  }

  show(text, actionLabel = "", action = null) {
    clearTimeout(this.timer);
    this.text.textContent = text;
    this.button.textContent = actionLabel;
    this.button.hidden = !action;
    this.action = action;
    this.box.hidden = false;
    this.timer = setTimeout(() => this.hide(), TOAST_MS);
  }

  hide() {
    clearTimeout(this.timer);
    this.box.hidden = true;
    this.action = null;
  }
}

translatePage();

const view = {
  boot: byId("boot"),
  auth: byId("auth-view"),
  authNotice: byId("auth-notice"),
  chat: byId("chat-view"),
  conn: byId("conn-status"),
  userName: byId("user-name"),
};

let signedIn = false;
const toast = new Toast();

const list = new ConversationList({
  list: byId("conv-list"),
  empty: byId("conv-empty"),
  more: byId("conv-more"),
  moreButton: byId("conv-more-button"),
  scroller: byId("conv-scroll"),
  error: byId("conv-error"),
});

const socket = new Realtime({
  onFrame(frame) {
    if (frame.type === "conversation.updated") {
      list.upsert(frame.conversation);
      chat.conversationUpdated(frame.conversation);
    } else if (frame.type === "conversation.deleted") {
      list.remove(frame.conversation_id);
      chat.conversationDeleted(frame.conversation_id);
    } else {
      chat.onFrame(frame);
    }
  },
  onOpen(reconnected) {
    chat.onSocketOpen(reconnected);
    if (reconnected) list.reload(); // events may have been missed while we were away
  },
  onSignedOut: () => sessionEnded(),
  onState(state, delayMs) {
    view.conn.dataset.state = state;
    const texts = {
      connecting: t("conn.connecting"),
      open: t("conn.open"),
      reconnecting: t("conn.reconnecting", { s: Math.max(1, Math.ceil(delayMs / 1000)) }),
      refused: t("conn.refused"),
    };
    view.conn.textContent = texts[state] ?? "";
  },
});

const chat = new ChatView({
  dom: {
    title: byId("conv-title"),
    actions: byId("conv-actions"),
    rename: byId("rename"),
    renameForm: byId("rename-form"),
    renameInput: byId("rename-input"),
    renameCancel: byId("rename-cancel"),
    remove: byId("delete"),
    notice: byId("conv-notice"),
    headerError: byId("conv-header-error"),
    scroll: byId("messages-scroll"),
    older: byId("older"),
    olderButton: byId("older-button"),
    messages: byId("messages"),
    empty: byId("messages-empty"),
    composer: byId("composer"),
    input: byId("composer-input"),
    send: byId("send"),
    stop: byId("stop"),
    composerError: byId("composer-error"),
  },
  socket,
  list,
  toast,
  navigate,
});

function navigate(id) {
  const hash = id ? `#c=${id}` : "";
  if (location.hash === hash || (!hash && location.hash === "#")) route();
  else location.hash = hash;
}

function route() {
  if (!signedIn) return;
  const match = CONVERSATION_HASH.exec(location.hash);
  const id = match ? match[1].toLowerCase() : null;
  // On a phone the list and the conversation take turns on the screen.
  document.body.classList.toggle("show-chat", id !== null || location.hash === "#new");
  list.setActive(id);
  if (id === chat.conversationId && chat.opened) return;
  chat.open(id);
  // On a phone, focusing would pop the keyboard up over the history.
  if (wide.matches) byId("composer-input").focus();
}

window.addEventListener("hashchange", route);

// ---- signing in and out -------------------------------------------------------------------

function showAuth(notice = "") {
  view.boot.hidden = true;
  view.chat.hidden = true;
  view.auth.hidden = false;
  say(view.authNotice, notice);
  byId("login-form").hidden = false;
  byId("register-form").hidden = true;
  byId("login-email").focus();
}

function showChat(user) {
  signedIn = true;
  view.boot.hidden = true;
  view.auth.hidden = true;
  view.chat.hidden = false;
  view.userName.textContent = user.display_name || user.email;
  for (const form of ["login-form", "register-form"]) byId(form).reset();
  socket.start();
  list.clear();
  list.reload();
  route();
}

function signOutLocally() {
  signedIn = false;
  socket.stop();
  chat.reset();
  list.clear();
  toast.hide();
}

// A 401 from any signed-in request, or the socket closed with 4401.
function sessionEnded() {
  if (!signedIn) return;
  signOutLocally();
  showAuth(t("auth.expired"));
}
onSessionLost(sessionEnded);

function describe(error) {
  const fields = Array.isArray(error.details)
    ? error.details.map((d) => fieldName(d.field)).filter(Boolean)
    : [];
  return fields.length ? `${error.message} ${t("err.fields", { fields: fields.join(", ") })}` : error.message;
}

function fieldName(field) {
  const name = String(field || "").split(".").pop();
  if (name === "email") return t("auth.email");
  if (name === "password") return `${t("auth.password")} (${t("auth.passwordHint")})`;
  if (name === "display_name") return t("auth.displayName");
  return "";
}

function bindAuthForm(formId, errorId, path, fields) {
  const form = byId(formId);
  const error = byId(errorId);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = {};
    for (const name of fields) {
      const value = form.elements[name].value;
      if (name === "display_name" && !value.trim()) continue;
      body[name] = name === "display_name" ? value.trim() : value;
    }
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    say(error, "");
    try {
      const { user } = await api("POST", path, body, { signedIn: false });
      showChat(user);
    } catch (failure) {
      say(error, describe(failure));
    } finally {
      button.disabled = false;
    }
  });
}

bindAuthForm("login-form", "login-error", "/api/auth/login", ["email", "password"]);
bindAuthForm("register-form", "register-error", "/api/auth/register", ["display_name", "email", "password"]);

byId("to-register").addEventListener("click", () => {
  byId("login-form").hidden = true;
  byId("register-form").hidden = false;
  byId("register-name").focus();
});
byId("to-login").addEventListener("click", () => {
  byId("register-form").hidden = true;
  byId("login-form").hidden = false;
  byId("login-email").focus();
});

byId("logout").addEventListener("click", async () => {
  // Close our socket first: the server closes it with 4401 anyway, which is not news here.
  socket.stop();
  try {
    await api("POST", "/api/auth/logout", undefined, { signedIn: false });
  } catch {
    // Signed out already, or offline: either way this page forgets the session.
  }
  signOutLocally();
  showAuth(t("auth.signedOut"));
});

byId("new-chat").addEventListener("click", () => {
  if (location.hash === "#new") route();
  else location.hash = "#new";
  byId("composer-input").focus();
});
byId("back").addEventListener("click", () => navigate(null));
byId("skip-link").addEventListener("click", (event) => {
  event.preventDefault(); // the hash is our router's
  byId("composer-input").focus();
});

// ---- start --------------------------------------------------------------------------------

(async () => {
  try {
    const { user } = await api("GET", "/api/auth/me", undefined, { signedIn: false });
    showChat(user);
  } catch (error) {
    showAuth(error.status === 401 ? "" : error.message);
  }
})();
