// REST under /api: JSON in and out, the CSRF header on unsafe requests, the page's language
// in Accept-Language, and one ApiError shape for every failure.

import { locale, t } from "./i18n.js";

export class ApiError extends Error {
  constructor(status, code, message, details = null) {
    super(message);
    this.status = status; // 0: the server was not reached
    this.code = code;
    this.details = details;
  }
}

const UNSAFE = new Set(["POST", "PUT", "PATCH", "DELETE"]);
let sessionLost = () => {};

// Called with the ApiError when a signed-in request answers 401: the session is gone.
export function onSessionLost(handler) {
  sessionLost = handler;
}

function cookie(name) {
  for (const part of document.cookie.split(";")) {
    const [key, ...rest] = part.trim().split("=");
    if (key === name) return decodeURIComponent(rest.join("="));
  }
  return "";
}

// `signedIn: false` for sign-in itself, where a 401 means wrong credentials.
export async function api(method, path, body = undefined, { signedIn = true } = {}) {
  const headers = { accept: "application/json", "accept-language": locale };
  if (body !== undefined) headers["content-type"] = "application/json";
  if (UNSAFE.has(method)) {
    // Read at every request: a sign-in in another tab rotates it.
    const token = cookie("csrftoken");
    if (token) headers["x-csrftoken"] = token;
  }
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
    });
  } catch {
    throw new ApiError(0, "network_error", t("err.network"));
  }
  if (response.status === 204) return null;
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    const error = data && typeof data === "object" ? data.error : null;
    const failure = new ApiError(
      response.status,
      error?.code ?? `http_${response.status}`,
      error?.message ?? t("err.generic"),
      error?.details ?? null,
    );
    if (response.status === 401 && signedIn) sessionLost(failure);
    throw failure;
  }
  return data;
}

export function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== null && value !== undefined) search.set(key, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

// A v4 UUID for client_message_id; crypto.randomUUID exists only in secure contexts.
export function newId() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
