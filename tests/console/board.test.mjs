// The console's board of live calls (rtc_server/console/static/board.js), with no
// browser: events once each across a replay, and admin.calls.active settling the table
// without losing a call that started meanwhile. Run by tests/unit/test_console_board.py.

import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { test } from "node:test";

// As the browser loads it: an ES module (a data: URL is one whatever Node's defaults).
const source = await readFile(
  new URL("../../rtc_server/console/static/board.js", import.meta.url),
  "utf8",
);
const { CallBoard } = await import("data:text/javascript," + encodeURIComponent(source));

let clock = 0;
const board = () => new CallBoard(() => clock);
const event = (id, callId, name, extra = {}) => ({
  id,
  callId,
  event: name,
  actor: name === "accepted" ? "callee" : name === "connected" ? "server" : "caller",
  data: { bookingId: 7, media: "direct", state: name === "dropped" ? "connected" : name, ...extra },
  at: "2026-11-26T10:00:00Z",
});
const active = (callId, state, durationMs = 0) => ({
  callId,
  bookingId: 7,
  media: "direct",
  state,
  callerName: "Asha Rao",
  calleeName: "Ravi Kumar",
  callerSide: "customer",
  acceptedAt: state === "ringing" ? null : "2026-11-26T10:00:00Z",
  durationMs,
});

test("an event seen before is dropped: a replay shows nothing twice", () => {
  const b = board();
  assert.equal(b.apply(event(1, 10, "ringing"), { live: true }), true);
  assert.equal(b.apply(event(2, 10, "accepted"), { live: true }), true);
  // Reconnected: the replay has both again, and what happened while away.
  const replay = [
    event(1, 10, "ringing"),
    event(2, 10, "accepted"),
    event(3, 10, "ended"),
    event(4, 11, "ringing"),
  ];
  assert.deepEqual(
    replay.map((e) => b.apply(e, { live: false })),
    [false, false, true, true],
  );
  assert.deepEqual(
    b.feed.map((e) => e.id),
    [4, 3, 2, 1],
  );
  assert.deepEqual(
    b.rows().map((r) => [r.callId, r.state]),
    [[11, "ringing"]],
  );
});

test("the duration runs from a live accept, or from the server's count", () => {
  const b = board();
  clock = 1000;
  b.apply(event(1, 10, "ringing"), { live: true });
  assert.equal(b.durationMs(b.calls.get(10)), null);
  b.apply(event(2, 10, "accepted"), { live: true });
  clock = 4500;
  assert.equal(b.durationMs(b.calls.get(10)), 3500);
  // A call met in admin.calls.active: its durationMs, running on from the answer.
  b.reconcile([active(10, "accepted", 3500), active(12, "connected", 60000)], b.mark());
  clock = 5500;
  assert.equal(b.durationMs(b.calls.get(12)), 61000);
  assert.equal(b.calls.get(12).callerName, "Asha Rao");
});

test("admin.calls.active settles the table but keeps what changed since it was asked", () => {
  const b = board();
  b.apply(event(1, 10, "ringing"), { live: false }); // replayed: ended unseen since
  b.apply(event(2, 11, "ringing"), { live: false });
  const mark = b.mark();
  // While admin.calls.active is on its way: call 12 starts, call 11 ends.
  b.apply(event(3, 12, "ringing"), { live: true });
  b.apply(event(4, 11, "ended", { reason: "cancelled" }), { live: true });
  // Its answer was taken before those: 11 in progress, 12 not yet, 10 gone.
  b.reconcile([active(11, "ringing")], mark);
  assert.deepEqual(
    b.rows().map((r) => r.callId),
    [12],
  );
});

test("a state never goes back, and an ended call never comes back", () => {
  const b = board();
  b.apply(event(1, 10, "ringing"), { live: true });
  b.apply(event(3, 10, "connected"), { live: true });
  b.apply(event(2, 10, "accepted"), { live: false }); // late in a replay
  assert.equal(b.calls.get(10).state, "connected");
  b.apply(event(4, 10, "dropped"), { live: true });
  assert.deepEqual([...b.calls.get(10).dropped], ["caller"]);
  b.apply(event(5, 10, "ended"), { live: true });
  b.named(active(10, "connected"));
  b.reconcile([active(10, "connected")], 0);
  assert.equal(b.calls.size, 0);
});
