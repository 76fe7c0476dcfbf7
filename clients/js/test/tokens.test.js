// Access tokens renewed before they expire and when the server says they have; a session
// ended elsewhere. Each test that moves the server's clock puts it back. Against a real
// server (tests/e2e/test_js_client.py).
import { afterEach, test } from "node:test";
import assert from "node:assert/strict";

import { Tap, closeAll, login, needsServer, newClient, server, until } from "../testing/harness.js";

afterEach(closeAll);

/** Moves the server's clock, and back by the same total when the test is done. */
function serverClock() {
  let moved = 0;
  return {
    move: async (/** @type {number} */ seconds) => {
      moved += seconds;
      await server.advanceClock(seconds);
    },
    restore: async () => {
      await server.advanceClock(-moved);
      moved = 0;
    },
  };
}

/** The requests of the login and token methods, in the order they were sent. @param {Tap} tap */
function tokenTraffic(tap) {
  return tap.sent
    .filter((f) => f.id !== undefined && ["session.authenticate", "auth.refresh"].includes(f.method))
    .map((f) => {
      const answer = tap.answerTo(f);
      return [f.method, answer ? (answer.error?.data?.reason ?? "ok") : "unanswered"];
    });
}

// The socket's token is checked by the server's wall clock for each call, but against
// the server's own clock (which these tests move) at session.authenticate and auth.refresh.
// Moving that clock back makes tokens that end soon by the wall clock: short-lived tokens
// without waiting for the 30 s the server allows at least.

/** Wait until the wall clock is past `iso`. @param {string} iso */
async function pastTime(iso) {
  const at = Date.parse(iso) + 50;
  await until(() => Date.now() > at, Math.max(0, at - Date.now()) + 5000, `the time ${iso}`);
}

test("renews the access token before it expires, on the same socket", needsServer, async () => {
  const clock = serverClock();
  try {
    await clock.move(-23); // tokens for 7 s: renewed after 5 s (half their life, at least 5 s)
    const tap = new Tap();
    const client = newClient({ WebSocket: tap.WebSocket });
    const issued = [];
    client.on("tokens", (tokens) => issued.push(tokens));
    const { tokens } = await login(client);
    await until(() => issued.length === 2 && client.tokens === issued[1], 15000, "the renewal");
    const ok = () => tokenTraffic(tap).filter(([, outcome]) => outcome === "ok").length;
    await until(() => ok() === 3, 5000, "the renewal's session.authenticate");

    const renewed = issued[1];
    assert.notEqual(renewed.accessToken, tokens.accessToken);
    assert.equal(renewed.sessionId, tokens.sessionId);
    assert.deepEqual(tokenTraffic(tap), [
      ["session.authenticate", "ok"],
      ["auth.refresh", "ok"],
      ["session.authenticate", "ok"],
    ]);
    const renewal = tap.requests("session.authenticate")[1];
    assert.equal(renewal.params.accessToken, renewed.accessToken);
    assert.equal(renewal.params.lastSeq, undefined); // a renewal replays nothing

    // Past the first token's end the socket still works: it was renewed in time.
    await pastTime(tokens.accessTokenExpiresAt);
    assert.equal((await client.call("me.get")).id, tokens.user.id);
    assert.equal(tap.received.filter((f) => f.error).length, 0, "no call was refused");
    assert.equal(tap.sockets, 1);
  } finally {
    await clock.restore();
  }
});

test("a call refused with token_expired renews the token and goes again", needsServer, async () => {
  const clock = serverClock();
  try {
    await clock.move(-28); // tokens for 2 s, and renewals at least 5 s apart
    const tap = new Tap();
    const client = newClient({ WebSocket: tap.WebSocket, backoff: { initialMs: 20, maxMs: 100 } });
    const { tokens, userId } = await login(client);

    await pastTime(tokens.accessTokenExpiresAt);
    assert.equal((await client.call("me.get")).id, userId);
    const [refused, retried] = tap.requests("me.get").map((f) => tap.answerTo(f));
    assert.equal(refused.error.data.reason, "token_expired");
    assert.equal(retried.result.id, userId);
    assert.deepEqual(tokenTraffic(tap), [
      ["session.authenticate", "ok"],
      ["auth.refresh", "ok"],
      ["session.authenticate", "ok"],
    ]);
    assert.equal(tap.sockets, 1);

    // Expired again when the socket drops: the client refreshes before it resumes.
    const seq = client.lastSeq;
    await pastTime(client.tokens.accessTokenExpiresAt);
    assert.equal(await server.drop(userId), 1);
    await until(() => tap.sockets === 2 && client.state === "authenticated", 10000, "the reconnect");
    assert.deepEqual(tokenTraffic(tap).slice(3), [
      ["auth.refresh", "ok"],
      ["session.authenticate", "ok"],
    ]);
    assert.equal(tap.requests("session.authenticate").at(-1).params.lastSeq, seq);
  } finally {
    await clock.restore();
  }
});

test("a token the server says has expired is refreshed before resuming", needsServer, async () => {
  const clock = serverClock();
  try {
    const tap = new Tap();
    const client = newClient({ WebSocket: tap.WebSocket, backoff: { initialMs: 20, maxMs: 100 } });
    const { userId } = await login(client); // 30 s tokens: this client renews them in 15 s

    await until(() => client.lastSeq === 1, 5000, "the welcome notification");
    await clock.move(36); // expired by the server's clock (5 s of leeway), not by the client's
    assert.equal(await server.drop(userId), 1);
    await until(() => tap.sockets === 2 && client.state === "authenticated", 10000, "the reconnect");
    assert.deepEqual(tokenTraffic(tap), [
      ["session.authenticate", "ok"],
      ["session.authenticate", "token_expired"],
      ["auth.refresh", "ok"],
      ["session.authenticate", "ok"],
    ]);
    assert.equal(tap.requests("session.authenticate").at(-1).params.lastSeq, 1);
    assert.equal((await client.call("me.get")).id, userId);
  } finally {
    await clock.restore();
  }
});

test("a session ended elsewhere closes the client and asks for a login", needsServer, async () => {
  const storage = new Map();
  const kept = {
    get: (/** @type {string} */ k) => storage.get(k) ?? null,
    set: (/** @type {string} */ k, /** @type {string} */ v) => void storage.set(k, v),
    remove: (/** @type {string} */ k) => void storage.delete(k),
  };
  const client = newClient({ storage: kept });
  const auth = [];
  client.on("auth", (info) => auth.push(info));
  const reconnects = [];
  client.on("reconnect", (info) => reconnects.push(info));
  const states = [];
  client.onState((state) => states.push(state));
  const { phone, tokens } = await login(client);
  const refreshToken = storage.get("rtc.refreshToken");

  // The same account on another phone ends this session ("log out that device").
  const other = newClient();
  await login(other, "customer", phone);
  await other.call("auth.revokeSession", { sessionId: tokens.sessionId });

  await until(() => auth.length === 1, 5000, "the auth event");
  assert.equal(auth[0].reason, "session_revoked");
  assert.equal(client.state, "closed");
  assert.equal(states.at(-1), "closed");
  assert.equal(client.tokens, null);
  assert.equal(client.user, null);
  assert.equal(storage.has("rtc.refreshToken"), false);
  assert.deepEqual(reconnects, []); // no reconnecting with a dead session

  // The next call goes out on a new socket, not logged in.
  const refused = await client.call("me.get").catch((e) => e);
  assert.equal(refused.code, 4001);
  assert.equal(refused.reason, "missing");

  // A page reloaded with the dead refresh token is told so, and forgets it.
  storage.set("rtc.refreshToken", refreshToken);
  const reloaded = newClient({ storage: kept });
  const ended = await reloaded.resume().catch((e) => e);
  assert.equal(ended.code, 4001);
  assert.equal(ended.reason, "session_revoked");
  assert.equal(storage.has("rtc.refreshToken"), false);
});
