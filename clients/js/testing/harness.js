// What the tests in test/ need around a real server (kept out of test/, where node --test
// would take every file for a test).
//
// tests/e2e/test_js_client.py starts the server and runs node --test with:
//   RTC_WS_URL        the server's socket port
//   RTC_TEST_CONTROL  an HTTP server of that test: GET /phone (a new phone number),
//                     GET /code?phone= (the login code the development SMS sender
//                     logged), POST /admins (a new admin account's phone),
//                     POST /clock?seconds= (move the server's clock), POST /drop?userId=
//                     (cut the user's TCP connections, no close frame).
// Without them (npm test alone) the tests that need a server are skipped.

import { RtcClient } from "../src/client.js";

export const WS_URL = process.env.RTC_WS_URL;
const CONTROL = process.env.RTC_TEST_CONTROL;

/** node:test options: skip with the reason when no server was given. */
export const needsServer = {
  skip: WS_URL && CONTROL ? false : "RTC_WS_URL and RTC_TEST_CONTROL unset: run tests/e2e/test_js_client.py",
};

/** @param {string} path @param {string} [method] */
async function control(path, method = "GET") {
  const response = await fetch(`${CONTROL}${path}`, { method });
  const body = await response.json();
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${JSON.stringify(body)}`);
  return body;
}

export const server = {
  /** @returns {Promise<string>} */
  phone: async () => (await control("/phone")).phone,
  /** @param {string} phone @returns {Promise<string>} */
  code: async (phone) => (await control(`/code?phone=${encodeURIComponent(phone)}`)).code,
  /** @returns {Promise<string>} an admin account's phone */
  admin: async () => (await control("/admins", "POST")).phone,
  /** @param {number} seconds */
  advanceClock: (seconds) => control(`/clock?seconds=${seconds}`, "POST"),
  /** @param {number} userId @returns {Promise<number>} how many sockets were cut */
  drop: async (userId) => (await control(`/drop?userId=${userId}`, "POST")).dropped,
};

/**
 * Every frame a client's sockets sent and received, and a hook to lose answers: the
 * client is given `tap.WebSocket`, a thin wrapper of the real one.
 */
export class Tap {
  constructor() {
    /** @type {any[]} */ this.sent = [];
    /** @type {any[]} */ this.received = [];
    /** @type {number[]} */ this.closeCodes = [];
    this.sockets = 0;
    /** @type {((frame: any) => boolean) | null} true: the client never sees the frame */
    this.lose = null;
    /** @type {((frame: any) => boolean) | null} true: the client gets the frame twice */
    this.twice = null;
    /** @type {Promise<void> | null} while set, new sockets start connecting only once it resolves */
    this.hold = null;
    const tap = this;
    this.WebSocket = class TappedWebSocket {
      /** @param {string} url */
      constructor(url) {
        /** @type {any} */ this.onopen = null;
        /** @type {any} */ this.onmessage = null;
        /** @type {any} */ this.onclose = null;
        /** @type {any} */ this.onerror = null;
        /** @type {WebSocket | null} */ this.ws = null;
        this.closed = false;
        if (tap.hold) tap.hold.then(() => this.closed || this.connect(url));
        else this.connect(url);
      }
      /** @param {string} url */
      connect(url) {
        tap.sockets += 1;
        const ws = new WebSocket(url);
        this.ws = ws;
        ws.onopen = (/** @type {any} */ e) => this.onopen && this.onopen(e);
        ws.onerror = (/** @type {any} */ e) => this.onerror && this.onerror(e);
        ws.onclose = (/** @type {any} */ e) => {
          tap.closeCodes.push(e.code);
          if (this.onclose) this.onclose(e);
        };
        ws.onmessage = (/** @type {any} */ e) => {
          const frame = JSON.parse(e.data);
          tap.received.push(frame);
          if (tap.lose && tap.lose(frame)) return;
          if (tap.twice && tap.twice(frame) && this.onmessage) this.onmessage(e);
          if (this.onmessage) this.onmessage(e);
        };
      }
      get readyState() {
        return this.ws ? this.ws.readyState : 0;
      }
      /** @param {string} data */
      send(data) {
        if (!this.ws) throw new Error("not open");
        tap.sent.push(JSON.parse(data));
        this.ws.send(data);
      }
      /** @param {number} [code] @param {string} [reason] */
      close(code, reason) {
        this.closed = true;
        if (this.ws) this.ws.close(code, reason);
      }
    };
  }

  /** Requests sent of `method`. @param {string} method */
  requests(method) {
    return this.sent.filter((frame) => frame.method === method && frame.id !== undefined);
  }

  /** The answer the server sent to `request`, on the socket it was sent on. @param {any} request */
  answerTo(request) {
    const at = this.sent.indexOf(request);
    const before = this.sent.slice(0, at + 1).filter((f) => f.id === request.id).length;
    return this.received.filter((frame) => frame.id === request.id && !frame.method)[before - 1];
  }
}

/**
 * A client on the test server; closed by `closeAll`.
 * @param {Partial<import("../src/client.js").ClientOptions>} [options]
 */
export function newClient(options = {}) {
  const client = new RtcClient({ url: String(WS_URL), ...options });
  opened.push(client);
  return client;
}
/** @type {RtcClient[]} */
const opened = [];

export function closeAll() {
  for (const client of opened.splice(0)) client.close();
}

/**
 * Log `client` in with a code read from the server, as a new account (or `phone`'s).
 * @param {RtcClient} client
 * @param {"customer" | "provider" | "admin"} [role]
 * @param {string} [phone]
 */
export async function login(client, role = "customer", phone) {
  const number = phone ?? (role === "admin" ? await server.admin() : await server.phone());
  await client.requestOtp(number, role);
  const tokens = await client.verifyOtp(number, role, await server.code(number), {
    fullName: "Asha Rao",
  });
  return { phone: number, tokens, userId: tokens.user.id };
}

/** An admin client, logged in. */
export async function admin() {
  const client = newClient();
  await login(client, "admin");
  return client;
}

/** `admin.announce` to every customer; its announcementId. @param {RtcClient} admin @param {string} title */
export async function announce(admin, title) {
  const answer = await admin.call("admin.announce", {
    audience: "customers",
    title,
    body: `About ${title}.`,
  });
  return answer.announcementId;
}

/**
 * Wait until `predicate()` is true (polled every 10 ms); fails after `timeoutMs`.
 * @param {() => unknown} predicate (may be async) @param {number} [timeoutMs] @param {string} [what]
 */
export async function until(predicate, timeoutMs = 10000, what = "condition") {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`${what} not reached in ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/**
 * What a socket of its own, outside the client, learns from session.authenticate
 * without lastSeq: where the server's stored ack of the user is (resumeFrom).
 * @param {string} accessToken
 * @returns {Promise<any>}
 */
export function rawAuthenticate(accessToken) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(String(WS_URL));
    ws.onopen = () =>
      ws.send(
        JSON.stringify({ jsonrpc: "2.0", id: 1, method: "session.authenticate", params: { accessToken } }),
      );
    ws.onerror = () => reject(new Error("raw socket failed"));
    ws.onmessage = (e) => {
      const frame = JSON.parse(String(e.data));
      if (frame.id !== 1) return;
      ws.close();
      if (frame.error) reject(new Error(JSON.stringify(frame.error)));
      else resolve(frame.result);
    };
  });
}
