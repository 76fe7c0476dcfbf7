// Events: in order, once each, acknowledged, and resumed after dropped sockets while an
// admin keeps announcing; idempotent calls resent with their key after a drop. Against a
// real server (tests/e2e/test_js_client.py).
import { afterEach, test } from "node:test";
import assert from "node:assert/strict";

import { backoffDelay } from "../src/client.js";
import {
  Tap,
  admin,
  announce,
  closeAll,
  login,
  needsServer,
  newClient,
  rawAuthenticate,
  server,
  until,
} from "../testing/harness.js";

afterEach(closeAll);

/** Every logged event `client` delivers, in delivery order. @param {any} client */
function record(client) {
  /** @type {{method: string, seq: number, data: any}[]} */
  const events = [];
  client.on("*", (_data, event) => event.seq !== null && events.push(event));
  return events;
}

/**
 * Each published announcement delivered once. (In any order: each is fanned out by a job
 * of its own, and concurrent jobs may write them to the log in another order.)
 * @param {string[]} delivered @param {string[]} published
 */
function assertEachOnce(delivered, published) {
  assert.equal(new Set(delivered).size, delivered.length, "no announcement twice");
  assert.deepEqual(delivered.filter((id) => published.includes(id)).sort(), [...published].sort());
}

/** @param {{seq: number}[]} events */
function assertConsecutive(events) {
  const seqs = events.map((event) => event.seq);
  const expected = seqs.map((_, i) => seqs[0] + i);
  assert.deepEqual(seqs, expected, "seqs in order, each once, none missing");
}

test("events reach handlers in order, once, and their acks reach the server", needsServer, async () => {
  const tap = new Tap();
  const customer = newClient({ WebSocket: tap.WebSocket, ackDelayMs: 200 });
  const events = record(customer);
  const announcements = [];
  customer.on("announcement.created", (data) => announcements.push(data.announcementId));
  const { tokens } = await login(customer);
  const ops = await admin();
  tap.twice = (frame) => frame.method === "announcement.created"; // as a faulty replay would

  const published = [];
  for (const n of [1, 2, 3, 4, 5]) published.push(await announce(ops, `Notice ${n}`));
  await until(() => published.every((id) => announcements.includes(id)), 10000, "five announcements");
  assertConsecutive(events);
  assert.equal(events[0].seq, 1); // the welcome notification
  assertEachOnce(announcements, published);

  // Acked in bulk (not once per event), up to the last delivered seq.
  await until(
    () => tap.sent.some((f) => f.method === "events.ack" && f.params.seq === customer.lastSeq),
    5000,
    "the ack",
  );
  const acks = tap.sent.filter((f) => f.method === "events.ack");
  assert.ok(acks.length < events.length, `${acks.length} acks for ${events.length} events`);
  assert.ok(
    acks.every((f) => f.id === undefined),
    "acks are notifications",
  );
  // The server stored it: a socket without lastSeq resumes after it.
  const delivered = customer.lastSeq;
  await until(
    async () => (await rawAuthenticate(tokens.accessToken)).resumeFrom === delivered,
    5000,
    "the stored ack",
  );
});

test(
  "dropped sockets reconnect with backoff and resume without duplicates or gaps",
  needsServer,
  async () => {
    const tap = new Tap();
    // stableMs: however slow this machine, the drops count as one run of failures.
    const backoff = {
      initialMs: 40,
      maxMs: 400,
      factor: 2,
      jitter: /** @type {"full"} */ ("full"),
      stableMs: 600000,
    };
    const random = () => 0.75;
    const customer = newClient({ WebSocket: tap.WebSocket, backoff, random });
    const events = record(customer);
    const announcements = [];
    customer.on("announcement.created", (data) => announcements.push(data.announcementId));
    const reconnects = [];
    customer.on("reconnect", (info) => reconnects.push(info));
    const states = [];
    customer.onState((state) => states.push(state));
    const { userId, phone } = await login(customer);
    // The same customer on another phone: what it has seen is in the server's log.
    const otherPhone = newClient();
    const seenElsewhere = [];
    otherPhone.on("announcement.created", (data) => seenElsewhere.push(data.announcementId));
    await login(otherPhone, "customer", phone);
    const ops = await admin();

    // An admin announces all along; the customer's socket is cut three times meanwhile,
    // and each time two more announcements are made while it is away.
    const published = [];
    let publishing = true;
    const background = (async () => {
      for (let n = 1; publishing || n <= 6; n++) {
        published.push(await announce(ops, `Notice ${n}`));
        await new Promise((resolve) => setTimeout(resolve, 100)); // an admin's pace, within the rate limit
      }
    })();
    const stopped = background.then(
      () => null,
      (error) => error,
    ); // its failure is reported below
    try {
      for (const round of [1, 2, 3]) {
        await until(() => announcements.length >= 4 * round, 15000, `${4 * round} announcements`);
        let release = () => {};
        tap.hold = new Promise((resolve) => (release = resolve));
        // Both of the customer's sockets: the other phone's client reconnects by itself.
        assert.equal(await server.drop(userId), 2);
        const missed = [await announce(ops, `Missed ${round}a`), await announce(ops, `Missed ${round}b`)];
        published.push(...missed);
        await until(
          () => missed.every((id) => seenElsewhere.includes(id)),
          10000,
          "the missed announcements",
        );
        tap.hold = null;
        release();
        await until(() => missed.every((id) => announcements.includes(id)), 10000, "the replay");
      }
    } finally {
      publishing = false;
      const error = await stopped;
      if (error) throw error;
    }
    await until(() => published.every((id) => announcements.includes(id)), 15000, "every announcement");

    assertConsecutive(events);
    assertEachOnce(announcements, published);
    // Each drop was a close without a closing handshake, followed by the backoff schedule.
    assert.deepEqual(tap.closeCodes, [1006, 1006, 1006]);
    assert.deepEqual(
      reconnects.map((r) => [r.attempt, r.code, r.delayMs]),
      [0, 1, 2].map((attempt) => [attempt, 1006, backoffDelay(attempt, backoff, random)]),
    );
    assert.equal(states.filter((s) => s === "reconnecting").length, 3);
    // Each new socket resumed from the seq the client had delivered, and was replayed what
    // came meanwhile.
    const resumes = tap.requests("session.authenticate").slice(1);
    assert.equal(resumes.length, 3);
    for (const request of resumes) {
      const { result } = tap.answerTo(request);
      assert.equal(result.recovered, true);
      assert.equal(result.resumeFrom, request.params.lastSeq);
      assert.ok(result.lastSeq >= request.params.lastSeq + 2, "events were missed, and replayed");
    }
  },
);

test("an idempotent call whose answer was lost is sent again with its key", needsServer, async () => {
  const tap = new Tap();
  const customer = newClient({ WebSocket: tap.WebSocket, backoff: { initialMs: 20, maxMs: 100 } });
  const { userId } = await login(customer);

  // The server answers, the answer is lost, and the socket drops.
  tap.lose = (frame) => {
    const request = tap.requests("addresses.create")[0];
    if (!request || frame.id !== request.id || tap.requests("addresses.create").length > 1) return false;
    server.drop(userId);
    return true;
  };
  const address = await customer.call("addresses.create", {
    state: "Karnataka",
    city: "Bengaluru",
    fullAddress: "12, 4th Cross, Indiranagar",
  });

  const [first, retry] = tap.requests("addresses.create");
  assert.ok(retry, "sent again after the reconnect");
  assert.match(first.params.idempotencyKey, /^[0-9a-f-]{36}$/);
  assert.equal(retry.params.idempotencyKey, first.params.idempotencyKey);
  assert.equal(tap.answerTo(first).result.id, address.id); // the first answer, stored
  const { addresses } = await customer.call("addresses.list", {});
  assert.deepEqual(
    addresses.map((a) => a.id),
    [address.id],
  );

  // A call that takes no key is not sent twice: its caller decides.
  tap.lose = (frame) => {
    const request = tap.requests("me.update")[0];
    if (!request || frame.id !== request.id) return false;
    tap.lose = null;
    server.drop(userId);
    return true;
  };
  const lost = await customer.call("me.update", { fullName: "Asha R" }).catch((e) => e);
  assert.equal(lost.code, "disconnected");
  assert.equal(lost.retryable, true);
  assert.equal(tap.requests("me.update").length, 1);
  await until(() => customer.state === "authenticated", 5000, "the reconnect");
  assert.equal((await customer.call("me.get")).fullName, "Asha R");
});
