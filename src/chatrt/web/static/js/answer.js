// The text of one message as the page knows it, and the rules that keep it exact.
//
// An answer's deltas carry seq 1, 2, 3, ...; joined they equal the final content. The page
// appends a delta only when its seq is the next one, so a delta delivered twice never shows
// twice. After a page load the REST history may hold a checkpoint of a streaming answer
// (its text so far) while the socket replays the deltas from seq 1: both are prefixes of
// the final content, so showing the longer one is always exact. `message.done` (or a final
// REST copy) replaces everything with the final content.

export class AnswerText {
  constructor(message) {
    this.status = message.status;
    this.lastSeq = 0;
    this.streamed = "";
    this.checkpoint = "";
    this.final = message.status === "streaming" ? null : message.content;
    if (this.final === null) this.checkpoint = message.content || "";
    this.detached = false; // the stream cannot be followed: wait for the final copy
  }

  get streaming() {
    return this.final === null;
  }

  get text() {
    if (this.final !== null) return this.final;
    return this.streamed.length >= this.checkpoint.length ? this.streamed : this.checkpoint;
  }

  // A message object from REST or an event. False if it was older news than what we have.
  apply(message) {
    if (this.final !== null) return false; // final content never goes back to streaming
    if (message.status !== "streaming") {
      this.final = message.content;
      this.status = message.status;
      return true;
    }
    if ((message.content || "").length > this.checkpoint.length) this.checkpoint = message.content;
    return true;
  }

  // "ok": appended; "old": already had it; "gap": a seq is missing; "ended": not streaming.
  delta(seq, text) {
    if (this.final !== null || this.detached) return "ended";
    if (seq <= this.lastSeq) return "old";
    if (seq !== this.lastSeq + 1) return "gap";
    this.streamed += text;
    this.lastSeq = seq;
    return "ok";
  }
}
