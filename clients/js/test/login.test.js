// Logging in, calls and their errors, timeouts, logout and resuming a session: against
// a real server (tests/e2e/test_js_client.py).
import { afterEach, test } from "node:test";
import assert from "node:assert/strict";

import { RpcError } from "../src/client.js";
import { Tap, closeAll, login, needsServer, newClient, server, until } from "../testing/harness.js";

afterEach(closeAll);

/** A storage like sessionStorage, in memory. */
function memoryStorage() {
  const items = new Map();
  return {
    items,
    get: (/** @type {string} */ key) => items.get(key) ?? null,
    set: (/** @type {string} */ key, /** @type {string} */ value) => void items.set(key, value),
    remove: (/** @type {string} */ key) => void items.delete(key),
  };
}

test("logs in with the SMS code and calls methods", needsServer, async () => {
  const client = newClient();
  const states = [];
  client.onState((state) => states.push(state));
  const phone = await server.phone();
  const sent = await client.requestOtp(phone, "customer");
  assert.equal(sent.sent, true);
  const tokens = await client.verifyOtp(phone, "customer", await server.code(phone), {
    fullName: "Asha Rao",
  });

  assert.deepEqual(states, ["connecting", "open", "authenticated"]);
  assert.equal(client.state, "authenticated");
  assert.equal(client.user.id, tokens.user.id);
  assert.equal(client.user.role, "customer");
  const me = await client.call("me.get");
  assert.equal(me.id, tokens.user.id);
  assert.equal(me.fullName, "Asha Rao");
  assert.equal(me.phone, `+91${phone}`);
  // A new account's first event, its welcome notification, came once the socket was bound.
  await until(() => client.lastSeq === 1, 5000, "the welcome notification");
});

test("server errors become RpcErrors with the error's name and data", needsServer, async () => {
  const client = newClient();
  const phone = await server.phone();
  await client.requestOtp(phone, "customer");
  const wrong = (await server.code(phone)) === "000000" ? "111111" : "000000";
  const refused = await client.verifyOtp(phone, "customer", wrong).catch((e) => e);
  assert.ok(refused instanceof RpcError);
  assert.equal(refused.code, 4011);
  assert.equal(refused.name, "invalid_code");
  assert.equal(refused.reason, "wrong_code");
  assert.equal(refused.data.attemptsLeft, 4);
  assert.equal(refused.retryable, false);
  assert.equal(client.state, "open"); // still anonymous

  const invalid = await client.call("auth.requestOtp", { phone: "12", role: "customer" }).catch((e) => e);
  assert.equal(invalid.code, -32602);
  assert.equal(invalid.data.fields[0].field, "phone");

  await client.verifyOtp(phone, "customer", await server.code(phone));
  const forbidden = await client.call("admin.stats", {}).catch((e) => e);
  assert.equal(forbidden.name, "forbidden");
  assert.equal(forbidden.code, 4003);
});

test("a call without an answer times out, and the socket goes on", needsServer, async () => {
  const tap = new Tap();
  const client = newClient({ WebSocket: tap.WebSocket });
  await login(client);
  let lostId = null;
  tap.lose = (frame) => frame.id !== undefined && frame.id === lostId;
  const call = client.call("me.get", undefined, { timeoutMs: 300 });
  lostId = tap.requests("me.get")[0].id;
  const error = await call.catch((e) => e);
  assert.ok(error instanceof RpcError);
  assert.equal(error.code, "timeout");
  assert.equal(error.retryable, true);
  await until(() => tap.answerTo(tap.requests("me.get")[0]), 5000, "the lost answer");
  tap.lose = null;
  assert.equal((await client.call("me.get")).role, "customer");
  assert.equal(client.state, "authenticated");
  assert.equal(tap.sockets, 1);
});

test("logout ends the session on the server and forgets the tokens", needsServer, async () => {
  const storage = memoryStorage();
  const client = newClient({ storage });
  const auth = [];
  client.on("auth", (info) => auth.push(info));
  const { tokens } = await login(client);
  assert.equal(storage.items.get("rtc.refreshToken"), tokens.refreshToken);

  await client.logout();
  assert.equal(client.state, "closed");
  assert.equal(client.tokens, null);
  assert.equal(client.user, null);
  assert.equal(storage.items.has("rtc.refreshToken"), false);
  assert.deepEqual(auth, []); // the app asked: no "auth" event

  // The server ended the session: its refresh token no longer works.
  const other = newClient();
  const refused = await other.call("auth.refresh", { refreshToken: tokens.refreshToken }).catch((e) => e);
  assert.equal(refused.code, 4001);
  assert.equal(refused.reason, "session_revoked");
});

test("resume() logs in again with the refresh token in storage", needsServer, async () => {
  const storage = memoryStorage();
  const first = newClient({ storage, ackDelayMs: 50 });
  const { userId } = await login(first);
  await until(
    () => first.lastSeq === 1 && storage.items.get("rtc.lastSeq") === `${userId}:1`,
    5000,
    "the ack",
  );
  first.close(); // a reload of the page

  const again = newClient({ storage });
  const tokens = await again.resume();
  assert.equal(again.state, "authenticated");
  assert.equal(again.user.id, userId);
  assert.equal(tokens.user.id, userId);
  assert.equal(again.lastSeq, 1); // resumed where the page left off
  assert.equal(storage.items.get("rtc.refreshToken"), tokens.refreshToken);

  const empty = newClient({ storage: memoryStorage() });
  const none = await empty.resume().catch((e) => e);
  assert.equal(none.code, "no_session");
});

test("a lastSeq the server does not have ends in a resync", needsServer, async () => {
  const storage = memoryStorage();
  const first = newClient({ storage });
  const { userId } = await login(first);
  first.close();
  storage.set("rtc.lastSeq", `${userId}:9999`); // ahead of the server: a reset database

  const again = newClient({ storage });
  const resyncs = [];
  again.on("resync", (info) => resyncs.push(info));
  await again.resume();
  assert.equal(resyncs.length, 1);
  assert.equal(resyncs[0].resumeFrom, 1);
  assert.equal(again.lastSeq, 1);
});
