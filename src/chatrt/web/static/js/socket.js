// The WebSocket at /ws: one per page, reconnected with exponential backoff and full jitter.
//
// Close codes (docs/protocol.md): 4401 means the session is gone (sign in again), 4403 a
// refused origin (retrying cannot help); everything else (1006 drop, 1011, 1012 restart,
// 4408 too slow, 4429 flood, ...) reconnects, and the owner resumes what it follows in
// `onOpen(reconnected)`.

const BASE_DELAY_MS = 500;
const MAX_DELAY_MS = 15000;
const STABLE_AFTER_MS = 5000; // a connection that lasted this long resets the backoff
const PING_EVERY_MS = 25000;
const PONG_WITHIN_MS = 10000;
export const CLOSE_SIGNED_OUT = 4401;
export const CLOSE_FORBIDDEN_ORIGIN = 4403;
const CLOSE_FLOOD = 4429;

export class Realtime {
  constructor({ onFrame, onOpen, onSignedOut, onState }) {
    this.onFrame = onFrame;
    this.onOpen = onOpen;
    this.onSignedOut = onSignedOut;
    this.onState = onState;
    this.ws = null;
    this.running = false;
    this.failures = 0;
    this.everOpened = false;
    this.retryTimer = null;
    this.pingTimer = null;
    this.pongTimer = null;
    this.stableTimer = null;
    this.onOnline = () => this.reconnectNow();
  }

  get isOpen() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  start() {
    if (this.running) return;
    this.running = true;
    this.everOpened = false;
    this.failures = 0;
    window.addEventListener("online", this.onOnline);
    this.connect();
  }

  stop() {
    this.running = false;
    window.removeEventListener("online", this.onOnline);
    this.clearTimers();
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      ws.close(1000);
    }
  }

  // False when the socket is not open; the owner re-sends what matters in onOpen.
  send(frame) {
    if (!this.isOpen) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  reconnectNow() {
    if (!this.running || this.isOpen) return;
    clearTimeout(this.retryTimer);
    if (!this.ws) this.connect();
  }

  connect() {
    this.clearTimers();
    this.onState("connecting", 0);
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${scheme}//${location.host}/ws`);
    this.ws = ws;
    ws.onopen = () => {
      const reconnected = this.everOpened;
      this.everOpened = true;
      this.onState("open", 0);
      this.stableTimer = setTimeout(() => {
        this.failures = 0;
      }, STABLE_AFTER_MS);
      this.schedulePing();
      this.onOpen(reconnected);
    };
    ws.onmessage = (event) => {
      clearTimeout(this.pongTimer);
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      if (frame.type !== "pong") this.onFrame(frame);
    };
    ws.onclose = (event) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.clearTimers();
      if (!this.running) return;
      if (event.code === CLOSE_SIGNED_OUT) {
        this.running = false;
        this.onSignedOut();
        return;
      }
      if (event.code === CLOSE_FORBIDDEN_ORIGIN) {
        this.running = false;
        this.onState("refused", 0);
        return;
      }
      this.scheduleReconnect(event.code);
    };
  }

  scheduleReconnect(code) {
    this.failures += 1;
    const ceiling = Math.min(MAX_DELAY_MS, BASE_DELAY_MS * 2 ** (this.failures - 1));
    // Full jitter spreads a whole crowd of clients dropped by one restart (1012).
    let delay = Math.random() * ceiling;
    if (code === CLOSE_FLOOD) delay = Math.max(delay, 2000); // we were too fast: slow down
    this.onState("reconnecting", delay);
    this.retryTimer = setTimeout(() => {
      if (this.running && !this.ws) this.connect();
    }, delay);
  }

  // An application ping now and then notices a dead link that TCP would hold open for long.
  schedulePing() {
    clearTimeout(this.pingTimer);
    this.pingTimer = setTimeout(() => {
      if (!this.send({ type: "ping" })) return;
      this.pongTimer = setTimeout(() => this.ws?.close(4000, "no pong"), PONG_WITHIN_MS);
      this.schedulePing();
    }, PING_EVERY_MS);
  }

  clearTimers() {
    clearTimeout(this.retryTimer);
    clearTimeout(this.pingTimer);
    clearTimeout(this.pongTimer);
    clearTimeout(this.stableTimer);
  }
}
