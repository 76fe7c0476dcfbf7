// @ts-check
/**
 * A client of the BuildXpert RTC socket protocol (docs/protocol.md in the repository):
 * JSON-RPC 2.0 over one websocket, for the admin console (browsers) and the customer and
 * provider apps (React Native). One file, no dependencies: copy it as it is.
 *
 *   const client = new RtcClient({ url: "wss://api.example.in/ws" });
 *   await client.requestOtp("98765 43210", "customer");
 *   await client.verifyOtp("98765 43210", "customer", code);   // logged in, events flow
 *   client.on("booking.updated", (data, event) => render(data.booking));
 *   const booking = await client.call("bookings.get", { bookingId: 42 });
 *
 * What it does for the app:
 * - requests matched to answers by id, each with a timeout (RpcError code "timeout");
 *   server errors as RpcError {code, name, message, data, retryable};
 * - events delivered to handlers once each, in seq order, across reconnects (a replayed
 *   event at or below lastSeq is dropped); acknowledged in bulk (events.ack);
 * - reconnects by itself with jittered exponential backoff (RECONNECT below), then
 *   session.authenticate {accessToken, lastSeq}: the server replays what was missed;
 * - renews the access token before it expires (auth.refresh, then session.authenticate
 *   on the same socket), and when the server says token_expired; a session ended by the
 *   server (logout elsewhere, revoked, refresh token reused) ends in state "closed" and
 *   an "auth" event so the app asks for a login again;
 * - an idempotencyKey for each call of a method that takes one, resent unchanged when
 *   the answer was lost with the socket.
 *
 * States: "connecting" (first socket opening), "open" (a socket, not logged in, or
 * logging in), "authenticated", "reconnecting" (waiting for the next try, or opening
 * it), "closed" (no socket and none coming: before the first call, after close(),
 * logout(), or a session the server ended; the next call opens a socket again, but
 * not after close()).
 *
 * Client events (besides the server's, whose names all have a dot):
 *   "auth"      {reason, message}: the session ended without this client asking; log in again
 *   "resync"    {resumeFrom}: the server no longer had every event after lastSeq: refetch state
 *   "tokens"    Tokens: new tokens (login, refresh); storage already has the refresh token
 *   "reconnect" {attempt, delayMs, code, reason}: the socket closed; the next try in delayMs
 */

// generated:idempotent-methods:begin
const IDEMPOTENT_METHODS = new Set([
  "addresses.create",
  "admin.announce",
  "admin.payments.refund",
  "admin.services.create",
  "bookings.accept",
  "bookings.cancel",
  "bookings.complete",
  "bookings.create",
  "bookings.reject",
  "bookings.start",
  "calls.accept",
  "calls.cancel",
  "calls.hangup",
  "calls.reject",
  "calls.report",
  "calls.start",
  "listings.renew",
  "payments.initiate",
  "providers.registerService",
  "ratings.create",
  "reports.create",
  "uploads.create",
]);
// generated:idempotent-methods:end

/**
 * @typedef {import("./types.js").Methods} Methods
 * @typedef {import("./types.js").Events} Events
 * @typedef {import("./types.js").LiveEvents} LiveEvents
 * @typedef {import("./types.js").Tokens} Tokens
 * @typedef {import("./types.js").User} User
 * @typedef {import("./types.js").SessionState} SessionState
 *
 * @typedef {"connecting" | "open" | "authenticated" | "reconnecting" | "closed"} State
 * @typedef {{ method: string, seq: number | null, data: any }} RtcEvent
 * @typedef {{ initialMs: number, maxMs: number, factor: number, jitter: "full" | "none", stableMs: number }} Backoff
 * @typedef {{ get(key: string): any, set(key: string, value: string): any, remove(key: string): any }} Storage
 *   sync (sessionStorage) or async (AsyncStorage): results are awaited
 * @typedef {{ timeoutMs?: number, idempotent?: boolean }} CallOptions
 *
 * @typedef {object} ClientOptions
 * @property {string} url the socket port's URL (wss://host/ws)
 * @property {any} [WebSocket] the constructor to use (default: the global WebSocket)
 * @property {number} [requestTimeoutMs] default timeout of a call (10000)
 * @property {Partial<Backoff>} [backoff] the reconnect schedule (RECONNECT)
 * @property {Storage | null} [storage] where the refresh token and lastSeq live
 *   (console: sessionStorage); without it tokens are kept in memory only
 * @property {string} [storageKey] prefix of the storage keys ("rtc")
 * @property {number} [renewBeforeMs] renew the access token this long before it
 *   expires (60000; at most half its lifetime)
 * @property {number} [heartbeatMs] after this long without a frame, system.ping
 *   checks the socket; no answer within requestTimeoutMs: reconnect (30000; 0: never)
 * @property {number} [ackDelayMs] acknowledge delivered events at most this late (1000)
 * @property {() => number} [now] the clock, Unix ms (Date.now)
 * @property {() => number} [random] uniform in [0, 1) (Math.random): the jitter
 */

/**
 * The reconnect schedule client authors must use (docs/protocol.md, "Connecting"):
 * the n-th try after a drop (n = 0, 1, 2 ...) waits a uniformly random time in
 * [0, min(maxMs, initialMs × factor^n)] ("full jitter"): 0–0.5 s, 0–1 s, 0–2 s …, at
 * most 30 s; after close 1012 (server restarting) at most initialMs. The count starts
 * again once a socket has stayed up for stableMs (10 s).
 * @type {Readonly<Backoff>}
 */
export const RECONNECT = Object.freeze({
  initialMs: 500,
  maxMs: 30000,
  factor: 2,
  jitter: "full",
  stableMs: 10000,
});

/**
 * The wait before reconnect try `attempt` (0 for the first after a drop).
 * @param {number} attempt
 * @param {Backoff} [backoff]
 * @param {() => number} [random]
 * @returns {number}
 */
export function backoffDelay(attempt, backoff = RECONNECT, random = Math.random) {
  const ceiling = Math.min(backoff.maxMs, backoff.initialMs * Math.pow(backoff.factor, attempt));
  return backoff.jitter === "none" ? ceiling : random() * ceiling;
}

/**
 * An error answer of the server, or a call that got none.
 * `code`: the JSON-RPC code (a number, docs/protocol.md "Errors"), or for errors of this
 * client a string: "timeout" (no answer in time), "disconnected" (the socket dropped
 * with the call unanswered; not resent because the method is not idempotent),
 * "closed" (close() was called), "no_session" (resume() with no refresh token).
 * `name`: the server's `data.error` (stable: switch on it), or the client code.
 */
export class RpcError extends Error {
  /**
   * @param {number | string} code
   * @param {string} name
   * @param {string} message
   * @param {Record<string, any>} [data]
   * @param {boolean} [retryable]
   */
  constructor(code, name, message, data = {}, retryable = false) {
    super(message);
    this.code = code;
    this.name = name;
    this.data = data;
    this.retryable = retryable;
  }

  /** `data.reason` (login codes, tokens, business rules), if any. @returns {string | undefined} */
  get reason() {
    return this.data.reason;
  }

  /** @param {{code: number, message: string, data?: Record<string, any>}} error */
  static fromWire(error) {
    const data = error.data || {};
    return new RpcError(error.code, data.error || String(error.code), error.message, data, !!data.retryable);
  }
}

/**
 * Renewals are at least this far apart: tokens that seem about to expire (a wrong clock)
 * must not make a loop of them. The server's token_expired answer covers the rest.
 */
const MIN_RENEWAL_MS = 5000;

/** Reasons of 4001 after which the tokens are worth nothing: log in again. */
const SESSION_OVER = new Set(["session_revoked", "token_reused", "token_invalid"]);

/** @param {unknown} error @param {string} reason */
function unauthenticated(error, reason) {
  return error instanceof RpcError && error.code === 4001 && error.reason === reason;
}

/** A fresh idempotency key: a UUID where the platform makes them. */
function newKey() {
  const crypto = globalThis.crypto;
  if (crypto && typeof crypto.randomUUID === "function") return crypto.randomUUID();
  const bytes = new Uint8Array(16);
  if (crypto && typeof crypto.getRandomValues === "function") crypto.getRandomValues(bytes);
  else for (let i = 0; i < 16; i++) bytes[i] = Math.floor(Math.random() * 256);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * @typedef {object} Request
 * @property {number} id
 * @property {string} method
 * @property {any} params
 * @property {boolean} idempotent resent after a reconnect if unanswered
 * @property {boolean} internal the client's own (login, renewal, ping): on this socket only
 * @property {boolean} renewed a token_expired answer already led to a renewal
 * @property {(result: any) => void} resolve
 * @property {(error: Error) => void} reject
 * @property {((result: any) => void) | null} apply run as the answer is read, before any later frame
 * @property {any} timer
 */

export class RtcClient {
  /** @param {ClientOptions} options */
  constructor(options) {
    if (!options || !/^wss?:\/\/./.test(String(options.url))) {
      throw new TypeError("RtcClient: options.url must be a ws:// or wss:// URL");
    }
    this.url = options.url;
    this._WebSocket = options.WebSocket || globalThis.WebSocket;
    if (!this._WebSocket) {
      throw new TypeError(
        "RtcClient: no WebSocket here; pass options.WebSocket (Node 20: --experimental-websocket)",
      );
    }
    this.requestTimeoutMs = options.requestTimeoutMs ?? 10000;
    /** @type {Backoff} */
    this.backoff = { ...RECONNECT, ...options.backoff };
    this.storage = options.storage ?? null;
    this.storageKey = options.storageKey ?? "rtc";
    this.renewBeforeMs = options.renewBeforeMs ?? 60000;
    this.heartbeatMs = options.heartbeatMs ?? 30000;
    this.ackDelayMs = options.ackDelayMs ?? 1000;
    this._now = options.now ?? Date.now;
    this._random = options.random ?? Math.random;

    /** @type {State} */
    this.state = "closed";
    /**
     * Highest event seq delivered to handlers; null before the first authentication.
     * @type {number | null}
     */
    this.lastSeq = null;
    /** The logged-in user ({id, role, fullName ...}), or null. @type {any} */
    this.user = null;

    /** @type {Tokens | null} */
    this._tokens = null;
    this._tokensAt = 0; // server time when they came
    this._clockOffset = 0; // server time - this device's time, from system.ping
    /** @type {any} */
    this._ws = null;
    this._bound = false; // the socket is authenticated with the current tokens
    this._binding = false;
    /** @type {Promise<void> | null} */
    this._renewal = null;
    this._ids = 1;
    /** @type {Map<number, Request>} sent, waiting for an answer */
    this._pending = new Map();
    /** @type {Request[]} waiting for a socket ready for them */
    this._queue = [];
    /** @type {Map<string, Set<Function>>} */
    this._handlers = new Map();
    /** @type {Set<(state: State) => void>} */
    this._stateHandlers = new Set();
    this._attempt = 0;
    this._upSince = 0;
    this._lastFrameAt = 0;
    this._ackedSeq = 0;
    this._unacked = 0;
    this._closedForGood = false;
    /** @type {number | null} the user whose seq lastSeq is */
    this._seqUser = null;
    /** @type {RpcError | null} why the last login or session ended */
    this._lastAuthError = null;
    /** @type {Promise<void> | null} */
    this._refreshing = null;
    /** @type {any} */ this._reconnectTimer = null;
    /** @type {any} */ this._renewTimer = null;
    /** @type {any} */ this._ackTimer = null;
    /** @type {any} */ this._heartbeatTimer = null;
  }

  /** The current tokens (null when logged out). */
  get tokens() {
    return this._tokens;
  }

  // ---- the app's API -----------------------------------------------------------------

  /**
   * Call a method; resolves with its result, rejects with RpcError.
   * A method that takes an idempotencyKey gets one (unless params has it) and, if the
   * socket drops before the answer, is sent again with the same key after reconnecting.
   * @template {keyof Methods} M
   * @param {M} method
   * @param {Methods[M]["params"]} [params]
   * @param {CallOptions} [options]
   * @returns {Promise<Methods[M]["result"]>}
   */
  call(method, params, options = {}) {
    /** @type {any} */
    let body = params;
    const idempotent =
      options.idempotent ?? (IDEMPOTENT_METHODS.has(method) || (body != null && "idempotencyKey" in body));
    if (idempotent && (body == null || body.idempotencyKey == null)) {
      body = { ...body, idempotencyKey: newKey() };
    }
    return this._request(method, body, { timeoutMs: options.timeoutMs, idempotent });
  }

  /**
   * auth.requestOtp: an SMS code to `phone` for logging in as `role`.
   * @param {string} phone @param {"customer" | "provider" | "admin"} role
   */
  requestOtp(phone, role) {
    return this.call("auth.requestOtp", { phone, role });
  }

  /**
   * auth.verifyOtp, then session.authenticate: resolves with the tokens once this
   * client is "authenticated" and events flow.
   * @param {string} phone @param {"customer" | "provider" | "admin"} role @param {string} code
   * @param {{ fullName?: string, device?: Record<string, string> }} [extra]
   * @returns {Promise<Tokens>}
   */
  async verifyOtp(phone, role, code, extra = {}) {
    const tokens = await this.call("auth.verifyOtp", { phone, role, code, ...extra });
    await this._login(tokens);
    return tokens;
  }

  /**
   * Log in again with the refresh token in storage (or in memory): auth.refresh, then
   * session.authenticate. Rejects with RpcError "no_session" when there is none, or the
   * server's 4001 when it no longer works (it is then forgotten).
   * @returns {Promise<Tokens>}
   */
  async resume() {
    const refreshToken = this._tokens?.refreshToken ?? (await this._load("refreshToken"));
    if (!refreshToken) throw new RpcError("no_session", "no_session", "no refresh token: log in");
    let tokens;
    try {
      tokens = await this._request("auth.refresh", { refreshToken }, { idempotent: false });
    } catch (error) {
      if (error instanceof RpcError && error.code === 4001) await this._forget();
      throw error;
    }
    const stored = await this._load("lastSeq");
    if (stored && this.lastSeq === null) {
      const [userId, seq] = String(stored).split(":").map(Number);
      this.lastSeq = seq;
      this._seqUser = userId;
    }
    await this._login(tokens);
    return tokens;
  }

  /** auth.logout: ends this session on the server, and forgets the tokens. */
  async logout() {
    try {
      await this._request("auth.logout", undefined, {
        idempotent: false,
        // Forget them before the server's close 4003, which follows the answer at once.
        apply: () => this._endSession(null),
      });
    } finally {
      this._endSession(null);
    }
  }

  /**
   * Listen to a server event ("booking.updated" ...), every server event ("*"), or one
   * of the client's ("auth", "resync", "tokens", "reconnect"). Returns the unsubscribe.
   * @template {string} E
   * @param {E} name
   * @param {(data: E extends keyof Events ? Events[E] : E extends keyof LiveEvents ? LiveEvents[E] : any, event: RtcEvent) => void} handler
   * @returns {() => void}
   */
  on(name, handler) {
    let handlers = this._handlers.get(name);
    if (!handlers) this._handlers.set(name, (handlers = new Set()));
    handlers.add(handler);
    return () => {
      handlers.delete(handler);
    };
  }

  /**
   * Called with each new state. Returns the unsubscribe.
   * @param {(state: State) => void} handler
   * @returns {() => void}
   */
  onState(handler) {
    this._stateHandlers.add(handler);
    return () => {
      this._stateHandlers.delete(handler);
    };
  }

  /** Close the socket for good: acknowledges what was delivered, fails what is pending. */
  close() {
    this._flushAck();
    this._closedForGood = true;
    this._stopTimers();
    clearTimeout(this._renewTimer);
    const ws = this._ws;
    this._ws = null;
    this._bound = false;
    if (ws) {
      detach(ws);
      try {
        ws.close(1000, "client closed");
      } catch (_) {
        // not open yet, in some implementations
      }
    }
    const closed = () => new RpcError("closed", "closed", "the client was closed");
    for (const request of [...this._pending.values(), ...this._queue]) this._settle(request, closed());
    this._setState("closed");
  }

  // ---- requests ------------------------------------------------------------------------

  /**
   * @param {string} method
   * @param {any} params
   * @param {{ timeoutMs?: number, idempotent?: boolean, internal?: boolean, apply?: (result: any) => void }} options
   * @returns {Promise<any>}
   */
  _request(method, params, options) {
    if (this._closedForGood) {
      return Promise.reject(new RpcError("closed", "closed", "the client was closed"));
    }
    return new Promise((resolve, reject) => {
      /** @type {Request} */
      const request = {
        id: this._ids++,
        method,
        params,
        idempotent: !!options.idempotent,
        internal: !!options.internal,
        renewed: false,
        resolve,
        reject,
        apply: options.apply || null,
        timer: null,
      };
      const timeoutMs = options.timeoutMs ?? this.requestTimeoutMs;
      request.timer = setTimeout(() => {
        this._settle(
          request,
          new RpcError("timeout", "timeout", `${method}: no answer in ${timeoutMs} ms`, {}, true),
        );
      }, timeoutMs);
      if (request.internal) this._send(request);
      else {
        this._queue.push(request);
        this._pump();
      }
    });
  }

  /** Take a request out of the client and end it with `outcome` (an Error, or a result). */
  _settle(/** @type {Request} */ request, /** @type {any} */ outcome) {
    clearTimeout(request.timer);
    this._pending.delete(request.id);
    const queued = this._queue.indexOf(request);
    if (queued >= 0) this._queue.splice(queued, 1);
    if (outcome instanceof Error) request.reject(outcome);
    else request.resolve(outcome);
  }

  /** Send what waits, if the socket is ready for the app's calls; open one if none. */
  _pump() {
    if (this._closedForGood || this._queue.length === 0) return;
    if (!this._ws) {
      if (!this._reconnectTimer) this._connect();
      return;
    }
    const ready =
      this._ws.readyState === 1 && (this._tokens ? this._bound && !this._renewal : !this._binding);
    if (!ready) return;
    for (const request of this._queue.splice(0)) this._send(request);
  }

  _send(/** @type {Request} */ request) {
    const ws = this._ws;
    /** @type {any} */
    const frame = { jsonrpc: "2.0", id: request.id, method: request.method };
    if (request.params !== undefined) frame.params = request.params;
    try {
      if (!ws || ws.readyState !== 1) throw new Error("socket not open");
      ws.send(JSON.stringify(frame));
    } catch (error) {
      if (request.internal || !request.idempotent) {
        this._settle(
          request,
          new RpcError("disconnected", "disconnected", `${request.method}: the socket closed`, {}, true),
        );
      } else this._queue.push(request);
      return;
    }
    this._pending.set(request.id, request);
  }

  /** @param {string} method @param {any} params */
  _notify(method, params) {
    if (this._ws && this._ws.readyState === 1) {
      this._ws.send(JSON.stringify({ jsonrpc: "2.0", method, params }));
    }
  }

  // ---- the socket -------------------------------------------------------------------

  _connect() {
    this._reconnectTimer = null;
    if (this._closedForGood) return;
    this._setState(this._attempt === 0 && this.state === "closed" ? "connecting" : "reconnecting");
    let ws;
    try {
      ws = new this._WebSocket(this.url);
    } catch (error) {
      console.error("RtcClient: cannot open a socket", error);
      ws = { readyState: 3, close() {} }; // closed at once: the next try follows the schedule
      this._ws = ws;
      this._closed(1006, String(error));
      return;
    }
    this._ws = ws;
    this._bound = false;
    ws.onopen = () => ws === this._ws && this._opened();
    ws.onmessage = (/** @type {any} */ message) => ws === this._ws && this._received(message.data);
    ws.onclose = (/** @type {any} */ event) => ws === this._ws && this._closed(event.code, event.reason);
    ws.onerror = () => {}; // a close event follows
  }

  _opened() {
    this._upSince = this._now();
    this._lastFrameAt = this._upSince;
    this._ackedSeq = 0;
    this._setState("open");
    this._measureClock();
    this._startHeartbeat();
    if (this._tokens) this._bind();
    else {
      this._attempt = 0;
      this._pump();
    }
  }

  /** @param {number} code @param {string} reason */
  _closed(code, reason) {
    const ws = this._ws;
    detach(ws);
    this._ws = null;
    this._bound = false;
    this._binding = false;
    this._stopTimers();
    if (this._upSince && this._now() - this._upSince >= this.backoff.stableMs) this._attempt = 0;
    this._upSince = 0;
    // Unanswered calls: the idempotent ones go again (same key), the others fail.
    for (const request of [...this._pending.values()].sort((a, b) => a.id - b.id)) {
      this._pending.delete(request.id);
      if (request.idempotent && !request.internal) this._queue.push(request);
      else
        this._settle(
          request,
          new RpcError(
            "disconnected",
            "disconnected",
            `${request.method}: the socket closed before its answer`,
            {},
            true,
          ),
        );
    }
    if (this._closedForGood) return;
    if (code === 4003 && this._tokens) {
      this._sessionOver({ reason: "session_revoked", message: reason || "session ended" });
      return;
    }
    if (!this._tokens && this._queue.length === 0) {
      this._setState("closed"); // not logged in, nothing to send: the next call reconnects
      return;
    }
    const delayMs =
      code === 1012
        ? this._random() * this.backoff.initialMs
        : backoffDelay(this._attempt, this.backoff, this._random);
    this._emit("reconnect", { attempt: this._attempt, delayMs, code, reason });
    this._attempt += 1;
    this._setState("reconnecting");
    this._reconnectTimer = setTimeout(() => this._connect(), delayMs);
  }

  /** Give up on the socket (it answers nothing) and reconnect. */
  _abandon() {
    const ws = this._ws;
    if (!ws) return;
    detach(ws);
    try {
      ws.close(4000, "no answer");
    } catch (_) {
      // closing a socket that never opened throws in some implementations
    }
    this._closed(1006, "no answer");
  }

  /** @param {any} text */
  _received(text) {
    this._lastFrameAt = this._now();
    let payload;
    try {
      payload = JSON.parse(typeof text === "string" ? text : new TextDecoder().decode(text));
    } catch (_) {
      return; // the server sends JSON text frames only
    }
    for (const frame of Array.isArray(payload) ? payload : [payload]) {
      if (frame && typeof frame.method === "string") this._event(frame.method, frame.params);
      else if (frame && frame.id != null) this._answer(frame);
    }
  }

  /** @param {any} frame */
  _answer(frame) {
    const request = this._pending.get(frame.id);
    if (!request) return; // timed out, or of a socket before
    this._pending.delete(frame.id);
    if (frame.error) {
      const error = RpcError.fromWire(frame.error);
      if (!request.internal && unauthenticated(error, "token_expired") && !request.renewed && this._tokens) {
        // The access token expired before we renewed it: renew, then ask again.
        request.renewed = true;
        this._queue.unshift(request);
        this._renew();
        return;
      }
      this._settle(request, error);
      return;
    }
    if (request.apply) request.apply(frame.result);
    this._settle(request, frame.result);
  }

  // ---- events -----------------------------------------------------------------------

  /** @param {string} method @param {any} params */
  _event(method, params) {
    const seq = params && typeof params.seq === "number" ? params.seq : null;
    if (seq === null) {
      this._emit(method, params, { method, seq: null, data: params });
      this._emit("*", params, { method, seq: null, data: params });
      return;
    }
    if (this.lastSeq !== null && seq <= this.lastSeq) return; // seen before a reconnect
    this.lastSeq = seq;
    const event = { method, seq, data: params.data };
    this._emit(method, event.data, event);
    this._emit("*", event.data, event);
    this._unacked += 1;
    if (this._unacked >= 50) this._flushAck();
    else this._scheduleAck();
  }

  _scheduleAck() {
    if (!this._ackTimer) this._ackTimer = setTimeout(() => this._flushAck(), this.ackDelayMs);
  }

  _flushAck() {
    clearTimeout(this._ackTimer);
    this._ackTimer = null;
    this._unacked = 0;
    const seq = this.lastSeq;
    if (seq === null || seq <= this._ackedSeq || !this._bound) return;
    this._notify("events.ack", { seq });
    this._ackedSeq = seq;
    if (this.user) this._save("lastSeq", `${this.user.id}:${seq}`).catch(reportStorage);
  }

  /**
   * @param {string} name @param {any} data @param {RtcEvent} [event]
   */
  _emit(name, data, event = { method: name, seq: null, data }) {
    const handlers = this._handlers.get(name);
    if (!handlers) return;
    for (const handler of [...handlers]) {
      try {
        handler(data, event);
      } catch (error) {
        // One handler's bug must not stop the others or the client.
        console.error(`RtcClient: a "${name}" handler threw`, error);
      }
    }
  }

  // ---- login and tokens ---------------------------------------------------------------

  /** Take new tokens from a login, and wait until this client is authenticated with them. */
  async _login(/** @type {Tokens} */ tokens) {
    if (this._seqUser !== tokens.user.id) {
      this.lastSeq = null; // another user's seqs are another count
      this._seqUser = tokens.user.id;
    }
    const otherUser = this._bound && this.user && this.user.id !== tokens.user.id;
    await this._setTokens(tokens);
    const ws = this._ws;
    if (otherUser) {
      this._abandon(); // bound to the other user: the server wants a new socket
    } else if (ws && ws.readyState === 1 && !this._binding) this._bind();
    else this._pump();
    await this._authenticated();
  }

  /** Resolves once "authenticated"; rejects if the session ends first. */
  _authenticated() {
    return new Promise((resolve, reject) => {
      if (this.state === "authenticated" && this._bound) return resolve(undefined);
      const off = this.onState((state) => {
        if (state === "authenticated") {
          off();
          resolve(undefined);
        } else if (state === "closed") {
          off();
          reject(this._lastAuthError || new RpcError("closed", "closed", "the client was closed"));
        }
      });
    });
  }

  /** @param {Tokens} tokens */
  async _setTokens(tokens) {
    // Stored first: if the app dies now, the new refresh token is the one that works.
    await this._save("refreshToken", tokens.refreshToken);
    this._tokens = tokens;
    this._tokensAt = this._serverNow();
    const same = this.user && this.user.id === tokens.user.id;
    this.user = same ? { ...this.user, ...tokens.user } : { ...tokens.user };
    this._emit("tokens", tokens);
  }

  _serverNow() {
    return this._now() + this._clockOffset;
  }

  _accessExpired() {
    return !!this._tokens && Date.parse(this._tokens.accessTokenExpiresAt) <= this._serverNow();
  }

  /** session.authenticate on the open socket: the first time, or again after a reconnect. */
  async _bind() {
    const ws = this._ws;
    this._binding = true;
    this._lastAuthError = null;
    try {
      if (this._accessExpired()) await this._refresh();
      try {
        await this._authenticate(true);
      } catch (error) {
        if (!unauthenticated(error, "token_expired") && !unauthenticated(error, "token_invalid")) throw error;
        // Expired by the server's clock, or signed with a key rotated since: refresh once.
        await this._refresh();
        await this._authenticate(true);
      }
    } catch (error) {
      if (ws !== this._ws) return; // the socket went meanwhile: its close handles it
      this._binding = false;
      if (error instanceof RpcError && error.code === 4001 && SESSION_OVER.has(error.reason || "")) {
        this._sessionOver({ reason: error.reason || "session_revoked", message: error.message }, error);
      } else this._abandon(); // no answer, database down ...: try again on a new socket
      return;
    }
    if (ws !== this._ws) return;
    this._binding = false;
    this._bound = true;
    this._setState("authenticated");
    this._scheduleRenewal();
    this._scheduleAck(); // again: an ack sent just before a drop may not have arrived
    this._pump();
  }

  /**
   * session.authenticate with the current access token; `resume`: the first on this
   * socket (with lastSeq: the server replays what came after it).
   * @param {boolean} resume
   */
  _authenticate(resume) {
    if (!this._tokens) return Promise.reject(new RpcError("no_session", "no_session", "logged out"));
    /** @type {any} */
    const params = { accessToken: this._tokens.accessToken };
    if (resume && this.lastSeq !== null) params.lastSeq = this.lastSeq;
    return this._request("session.authenticate", params, {
      internal: true,
      // Read before the replayed events that follow this answer on the socket.
      apply: (/** @type {SessionState} */ state) => {
        this.user = { ...this.user, id: state.userId, role: state.role };
        if (!resume) return;
        this._seqUser = state.userId;
        this.lastSeq = state.resumeFrom;
        if (!state.recovered) this._emit("resync", { resumeFrom: state.resumeFrom });
      },
    });
  }

  /**
   * auth.refresh on this socket: new tokens (the old refresh token stops working). One
   * at a time: a second refresh with the same token would end the first one's tokens.
   */
  _refresh() {
    if (this._refreshing) return this._refreshing;
    const tokens = this._tokens;
    if (!tokens) return Promise.reject(new RpcError("no_session", "no_session", "logged out"));
    this._refreshing = this._request(
      "auth.refresh",
      { refreshToken: tokens.refreshToken },
      { internal: true },
    )
      .then((fresh) => this._setTokens(fresh))
      .finally(() => {
        this._refreshing = null;
      });
    return this._refreshing;
  }

  /** New tokens on the live socket, before the access token expires (or once it has). */
  _renew() {
    if (this._renewal) return this._renewal;
    const ws = this._ws;
    this._renewal = (async () => {
      try {
        await this._refresh();
        if (ws === this._ws && this._bound) await this._authenticate(false);
        this._scheduleRenewal();
      } catch (error) {
        if (error instanceof RpcError && error.code === 4001 && SESSION_OVER.has(error.reason || "")) {
          this._sessionOver({ reason: error.reason || "session_revoked", message: error.message }, error);
        } else if (ws === this._ws) this._abandon(); // retried on the next socket (within the refresh grace)
      } finally {
        this._renewal = null;
        this._pump();
      }
    })();
    return this._renewal;
  }

  _scheduleRenewal() {
    clearTimeout(this._renewTimer);
    if (!this._tokens) return;
    const expires = Date.parse(this._tokens.accessTokenExpiresAt);
    const lead = Math.min(this.renewBeforeMs, (expires - this._tokensAt) / 2);
    const delay = Math.max(MIN_RENEWAL_MS, expires - lead - this._serverNow());
    this._renewTimer = setTimeout(() => {
      if (this._bound) this._renew();
    }, delay);
  }

  /**
   * The server ended the session (or its tokens are worth nothing): forget them, say so.
   * @param {{reason: string, message: string}} info @param {RpcError} [error]
   */
  _sessionOver(info, error) {
    this._lastAuthError =
      error || new RpcError(4001, "unauthenticated", info.message, { reason: info.reason });
    this._endSession(info);
  }

  /** Forget the session; `info`: the server ended it (an "auth" event), null: we did. */
  _endSession(/** @type {{reason: string, message: string} | null} */ info) {
    if (!this._tokens) return;
    this._forget();
    const failure =
      this._lastAuthError || new RpcError(4001, "unauthenticated", "logged out", { reason: "missing" });
    for (const request of [...this._queue]) this._settle(request, failure);
    const ws = this._ws;
    this._ws = null;
    this._bound = false;
    this._binding = false;
    this._stopTimers();
    if (ws) {
      detach(ws);
      try {
        ws.close(1000, "logged out");
      } catch (_) {
        // not open yet
      }
    }
    for (const request of [...this._pending.values()]) this._settle(request, failure);
    this._setState("closed");
    if (info) this._emit("auth", info);
  }

  async _forget() {
    this._tokens = null;
    this.user = null;
    clearTimeout(this._renewTimer);
    await this._remove("refreshToken").catch(reportStorage);
  }

  // ---- clock, heartbeat, timers -------------------------------------------------------

  /** The server's clock against this device's (token expiry is in the server's time). */
  _measureClock() {
    const sent = this._now();
    this._request("system.ping", undefined, { internal: true }).then(
      (pong) => {
        const received = this._now();
        this._clockOffset = pong.serverTime - (sent + received) / 2;
        if (this._bound) this._scheduleRenewal();
      },
      () => {},
    );
  }

  _startHeartbeat() {
    if (!this.heartbeatMs) return;
    this._heartbeatTimer = setInterval(
      () => {
        if (this._now() - this._lastFrameAt < this.heartbeatMs) return;
        this._lastFrameAt = this._now();
        const ws = this._ws;
        this._request("system.ping", undefined, { internal: true }).catch((error) => {
          if (ws === this._ws && error.code === "timeout") this._abandon();
        });
      },
      Math.min(this.heartbeatMs, 5000),
    );
  }

  _stopTimers() {
    clearTimeout(this._ackTimer);
    this._ackTimer = null;
    clearInterval(this._heartbeatTimer);
    this._heartbeatTimer = null;
    clearTimeout(this._reconnectTimer);
    this._reconnectTimer = null;
  }

  /** @param {State} state */
  _setState(state) {
    if (this.state === state) return;
    this.state = state;
    for (const handler of [...this._stateHandlers]) {
      try {
        handler(state);
      } catch (error) {
        console.error("RtcClient: a state handler threw", error);
      }
    }
  }

  // ---- storage ------------------------------------------------------------------------

  /** @param {string} name */
  async _load(name) {
    return this.storage ? await this.storage.get(`${this.storageKey}.${name}`) : null;
  }

  /** @param {string} name @param {string} value */
  async _save(name, value) {
    if (this.storage) await this.storage.set(`${this.storageKey}.${name}`, value);
  }

  /** @param {string} name */
  async _remove(name) {
    if (this.storage) await this.storage.remove(`${this.storageKey}.${name}`);
  }
}

/** @param {unknown} error */
function reportStorage(error) {
  console.error("RtcClient: storage failed", error);
}

/** Stop listening to a socket we are done with. @param {any} ws */
function detach(ws) {
  if (!ws) return;
  ws.onopen = ws.onmessage = ws.onclose = null;
  ws.onerror = () => {};
}
