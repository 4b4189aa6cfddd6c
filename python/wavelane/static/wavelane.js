// wavelane.js — the browser client for a Wavelane server. One dependency-free ES module.
//
//   import { Wavelane } from "/wavelane.js";
//   const client = new Wavelane("ws://host:8765/ws", { token: "…" /* or getToken: async () => "…" */ });
//   client.on("state", (s) => {});                 // "connecting" | "connected" | "disconnected" | "closed"
//   const sub = client.subscribe("room:1", (data, meta) => {}, { history: 50 });  // meta: {topic, offset, recovered}
//   await sub.ready;                                // resolves on `subscribed`, rejects on an error
//   client.send({ any: "json" });                   // application message (queued while offline)
//   sub.unsubscribe(); client.close();
//
// It reconnects by itself (exponential backoff with jitter, capped; at once after 1012/1013),
// resubscribes every topic with `recover` positions, drops duplicates by offset, and tells the
// application when recovery was impossible (`meta.recovered === false`, and a "resync" event)
// so it can reload its state. Close codes after which reconnecting cannot help (1002, 1003,
// 1007-1009, 4000-4999 except 4001 "token expired") end the client ("closed" state). With
// `getToken`, the token is refreshed on the live connection before `exp`, and fetched anew
// before reconnecting after 4001. Browsers cannot set headers on a WebSocket: the token goes in
// the `?token=` query parameter (or a cookie the server accepts from allowed origins).
// docs/clients.md documents the API.

const TERMINAL = new Set([1002, 1003, 1007, 1008, 1009]);
const AT_ONCE = new Set([1012, 1013]);
const TOKEN_EXPIRED = 4001;

function decodeBinary(buf) {
  // A topic publication on the binary lane: version 1, kind 1, u16 topic length, topic, u64 offset.
  if (buf.byteLength < 12) return null;
  const v = new DataView(buf);
  if (v.getUint8(0) !== 1 || v.getUint8(1) !== 1) return null;
  const n = v.getUint16(2);
  if (buf.byteLength < 12 + n) return null;
  const topic = new TextDecoder().decode(new Uint8Array(buf, 4, n));
  const offset = Number(v.getBigUint64(4 + n));
  return { topic, offset, data: buf.slice(12 + n) };
}

export class Subscription {
  constructor(client, topic, callback, options) {
    this.client = client;
    this.topic = topic;
    this.callback = callback;
    this.options = options || {};
    this.epoch = null;
    this.offset = 0;
    this.active = true;
    this._joinLeave = { join: [], leave: [] };
    this.ready = new Promise((resolve, reject) => { this._resolve = resolve; this._reject = reject; });
    this.ready.catch(() => {});  // an unobserved refusal is not an unhandled rejection
  }

  /** Current members of the topic (needs `presence: true` on the server). */
  presence(timeout = 5000) {
    return this.client._request({ type: "presence", topic: this.topic }, timeout).then((r) => r.members);
  }

  onJoin(cb) { this._joinLeave.join.push(cb); return this; }
  onLeave(cb) { this._joinLeave.leave.push(cb); return this; }

  unsubscribe() {
    if (!this.active) return;
    this.active = false;
    this.client._subs.delete(this.topic);
    if (this.client.state === "connected") {
      this.client._request({ type: "unsubscribe", topics: [this.topic] }).catch(() => {});
    }
  }
}

export class Wavelane {
  constructor(url, options = {}) {
    this.url = url;
    this.token = options.token || null;
    this.getToken = options.getToken || null;
    this.minBackoff = options.minBackoff ?? 200;
    this.maxBackoff = options.maxBackoff ?? 10000;
    this.maxQueue = options.maxQueue ?? 1000;
    this.requestTimeout = options.requestTimeout ?? 10000;
    this.refreshMargin = options.refreshMargin ?? 10;  // seconds before exp
    this.tokenParam = options.tokenParam ?? "token";
    this.state = "disconnected";
    this.ready = null;          // the server's `ready` message of the current connection
    this.reconnects = 0;
    this.duplicatesDropped = 0;
    this._subs = new Map();
    this._pending = new Map();
    this._ids = 0;
    this._queue = [];
    this._listeners = new Map();
    this._attempt = 0;
    this._closed = false;
    this._timer = null;
    this._refreshTimer = null;
    this._needToken = false;
    this._connect();
  }

  on(event, cb) {
    if (!this._listeners.has(event)) this._listeners.set(event, []);
    this._listeners.get(event).push(cb);
    return this;
  }

  _emit(event, ...args) {
    for (const cb of this._listeners.get(event) || []) {
      try { cb(...args); } catch (e) { setTimeout(() => { throw e; }); }
    }
  }

  _setState(s) {
    if (this.state === s) return;
    this.state = s;
    this._emit("state", s);
  }

  subscribe(topic, callback, options = {}) {
    const existing = this._subs.get(topic);
    if (existing) existing.unsubscribe();
    const sub = new Subscription(this, topic, callback, options);
    this._subs.set(topic, sub);
    if (this.state === "connected") this._subscribe([sub], false);
    return sub;
  }

  /** Send an application message: a string as text, an ArrayBuffer/typed array as binary,
   * anything else as JSON. Queued (at most maxQueue) while offline; throws when full. */
  send(data) {
    const frame = (typeof data === "string" || data instanceof ArrayBuffer || ArrayBuffer.isView(data))
      ? data : JSON.stringify(data);
    if (this._closed) throw new Error("wavelane: client is closed");
    if (this.state === "connected" && this._queue.length === 0) { this._ws.send(frame); return; }
    if (this._queue.length >= this.maxQueue) throw new Error(`wavelane: offline queue is full (${this.maxQueue})`);
    this._queue.push(frame);
  }

  /** Call `method` on the server's application; resolves with its `result`, rejects with an
   * Error (`code`, `error`) when it answered with an error, or on timeout / connection loss
   * (a call is not retried: it may have run). */
  rpc(method, params, { timeout } = {}) {
    const msg = { type: "rpc", method };
    if (params !== undefined) msg.params = params;
    return this._request(msg, timeout ?? this.requestTimeout).then((r) => {
      if (r.error) { const e = new Error(`${r.error.code}: ${r.error.message || ""}`); e.code = r.error.code; e.error = r.error; throw e; }
      return r.result;
    });
  }

  close() {
    this._closed = true;
    clearTimeout(this._timer);
    clearTimeout(this._refreshTimer);
    this._failPending(new Error("wavelane: closed"));
    if (this._ws) this._ws.close(1000);
    this._setState("closed");
  }

  // ---------------------------------------------------------------- internals

  async _connect() {
    if (this._closed) return;
    this._setState("connecting");
    if ((this._needToken || !this.token) && this.getToken) {
      try { this.token = await this.getToken(); } catch (e) { return this._retry(); }
      this._needToken = false;
    }
    let url = this.url;
    if (this.token && this.tokenParam) {
      url += (url.includes("?") ? "&" : "?") + encodeURIComponent(this.tokenParam) + "=" + encodeURIComponent(this.token);
    }
    let ws;
    try { ws = new WebSocket(url); } catch (e) { return this._retry(); }
    ws.binaryType = "arraybuffer";
    this._ws = ws;
    let opened = false;
    ws.onopen = () => { opened = true; };
    ws.onmessage = (ev) => this._onFrame(ev.data);
    ws.onclose = (ev) => {
      if (this._ws !== ws) return;
      this._ws = null;
      clearTimeout(this._refreshTimer);
      const wasConnected = this.state === "connected";
      this._failPending(new Error(`wavelane: connection closed (${ev.code})`));
      if (this._closed) return;
      const code = ev.code;
      const terminal = TERMINAL.has(code) || (code >= 4000 && code <= 4999 && code !== TOKEN_EXPIRED)
        || (code === TOKEN_EXPIRED && !this.getToken);
      this._emit("disconnect", { code, reason: ev.reason });
      if (terminal) { this._closed = true; this._setState("closed"); return; }
      if (code === TOKEN_EXPIRED || (!opened && this.getToken)) this._needToken = true;
      this._setState("disconnected");
      if (wasConnected) this.reconnects++;
      if (AT_ONCE.has(code)) { this._attempt = 0; this._timer = setTimeout(() => this._connect(), 0); return; }
      this._retry();
    };
  }

  _retry() {
    this._attempt++;
    const base = Math.min(this.maxBackoff, this.minBackoff * 2 ** Math.min(this._attempt - 1, 16));
    const delay = base * (0.5 + Math.random() / 2);
    this._setState("disconnected");
    this._timer = setTimeout(() => this._connect(), delay);
  }

  _failPending(err) {
    for (const [, p] of this._pending) { clearTimeout(p.timer); p.reject(err); }
    this._pending.clear();
  }

  _request(msg, timeout = this.requestTimeout) {
    if (this.state !== "connected" && msg.type !== "subscribe" || !this._ws) {
      return Promise.reject(new Error("wavelane: not connected"));
    }
    const id = ++this._ids;
    msg.id = id;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => { this._pending.delete(id); reject(new Error("wavelane: timeout")); }, timeout);
      this._pending.set(id, { resolve, reject, timer });
      this._ws.send(JSON.stringify(msg));
    });
  }

  _onReady(ready) {
    this.ready = ready;
    this._attempt = 0;
    const subs = [...this._subs.values()];
    if (subs.length) this._subscribe(subs, true);
    const queued = this._queue;
    this._queue = [];
    for (const f of queued) this._ws.send(f);
    this._setState("connected");
    this._scheduleRefresh(ready.exp);
  }

  _subscribe(subs, resubscribe) {
    const msg = { type: "subscribe", topics: subs.map((s) => s.topic) };
    const recover = {};
    for (const s of subs) if (s.epoch !== null) recover[s.topic] = { epoch: s.epoch, offset: s.offset };
    if (Object.keys(recover).length) msg.recover = recover;
    if (subs.some((s) => s.options.presence)) msg.presence = true;
    const history = Math.max(0, ...subs.filter((s) => s.epoch === null).map((s) => s.options.history || 0));
    if (history) msg.history = history;
    this._request(msg).then((reply) => {
      const positions = reply.positions || {}, recovered = reply.recovered || {};
      const errors = reply.recovery_errors || {};
      for (const s of subs) {
        if (recovered[s.topic] === false) {
          s._recoveredFalse = true;
          this._emit("resync", s.topic, errors[s.topic]);
        }
        const pos = positions[s.topic];
        if (recovered[s.topic] !== true && pos) {
          // a fresh subscription, or a failed recovery: continue from the current position (a first
          // subscription with `history` gets the backlog before it: accept that)
          const backlog = s.epoch === null && s.options.history ? s.options.history : 0;
          s.epoch = pos.epoch; s.offset = Math.max(0, pos.offset - backlog);
        }
        s._resolve(reply);
      }
    }, (err) => {
      for (const s of subs) {
        if (!resubscribe && this._subs.get(s.topic) === s) this._subs.delete(s.topic);
        if (err.code) { s.active = false; this._emit("error", err); }
        s._reject(err);
      }
    });
  }

  _scheduleRefresh(exp) {
    clearTimeout(this._refreshTimer);
    if (typeof exp !== "number" || !this.getToken) return;
    const delay = Math.max(0, (exp - Date.now() / 1000 - this.refreshMargin) * 1000);
    this._refreshTimer = setTimeout(async () => {
      try {
        const token = await this.getToken();
        const reply = await this._request({ type: "refresh", token });
        this.token = token;
        this._emit("refreshed", reply.exp);
        this._scheduleRefresh(reply.exp);
      } catch (e) { /* the server closes with 4001 at exp; we reconnect with a fresh token */ }
    }, Math.min(delay, 2 ** 31 - 1));
  }

  _deliver(topic, offset, data) {
    const sub = this._subs.get(topic);
    if (!sub || !sub.active) return;
    if (offset > 0) {
      if (offset <= sub.offset) { this.duplicatesDropped++; return; }
      sub.offset = offset;
    }
    const meta = { topic, offset };
    if (sub._recoveredFalse) { meta.recovered = false; sub._recoveredFalse = false; }
    sub.callback(data, meta);
  }

  _onFrame(raw) {
    if (raw instanceof ArrayBuffer) {
      const m = decodeBinary(raw);
      if (m) this._deliver(m.topic, m.offset, m.data);
      else this._emit("message", raw);
      return;
    }
    let msg;
    try { msg = JSON.parse(raw); } catch (e) { this._emit("message", raw); return; }
    if (msg === null || typeof msg !== "object" || Array.isArray(msg)) { this._emit("message", msg); return; }
    const pending = msg.id !== undefined ? this._pending.get(msg.id) : undefined;
    switch (msg.type) {
      case "ready": this._onReady(msg); return;
      case "message": if (typeof msg.topic === "string") { this._deliver(msg.topic, msg.offset || 0, msg.data); return; } break;
      case "join": case "leave": {
        const sub = this._subs.get(msg.topic);
        if (sub) for (const cb of sub._joinLeave[msg.type]) cb(msg.member);
        return;
      }
      case "subscribed": case "unsubscribed": case "refreshed": case "presence": case "pong": case "reply":
        if (pending) { this._pending.delete(msg.id); clearTimeout(pending.timer); pending.resolve(msg); return; }
        break;
      case "error":
        if (pending) {
          this._pending.delete(msg.id); clearTimeout(pending.timer);
          const e = new Error(`${msg.code}: ${msg.message || ""}`); e.code = msg.code; pending.reject(e);
          return;
        }
        this._emit("error", msg);
        return;
    }
    this._emit("message", msg);
  }
}

export default Wavelane;
