// The calls in progress as the console knows them, from admin.calls.watch's replay, its
// live admin.call.event notifications and admin.calls.active: no DOM, no socket.
//
// Call events are live-only (no seq): after a reconnect the console watches again, and
// the replay repeats events it has shown. Each event has an id: one already seen is
// dropped, so none is shown twice; the replay covers the minutes the socket was down,
// so none is missed. admin.calls.active then settles which calls are in progress (a
// call whose events fell outside the replay, or that ended unseen).

const RANK = { ringing: 0, accepted: 1, connected: 2, ended: 3 };
const SEEN_KEPT = 5000; // event ids remembered (a replay has at most 1000)
const FEED_KEPT = 100; // newest events listed

export class CallBoard {
  constructor(now = () => performance.now()) {
    this.now = now;
    /** callId → row: {callId, bookingId, media, state, callerName, calleeName, callerSide,
     *  baseMs, baseAt, dropped: Set, named, touched} */
    this.calls = new Map();
    this.feed = []; // newest first
    this._seen = new Set();
    this._ended = new Set();
    this._generation = 0;
  }

  /** Apply one call event; false when it was seen already (nothing changes). `live`: it
   *  just happened (an admin.call.event), not replayed from the past minutes. */
  apply(event, { live }) {
    if (this._seen.has(event.id)) return false;
    this._remember(event.id);
    this.feed.unshift(event);
    this.feed.sort((a, b) => b.id - a.id); // newest first, replayed ones in their place
    this.feed.length = Math.min(this.feed.length, FEED_KEPT);
    const data = event.data ?? {};
    if (event.event === "ended" || data.state === "ended") {
      this._ended.add(event.callId);
      if (this._ended.size > SEEN_KEPT) this._ended.delete(this._ended.values().next().value);
      this.calls.delete(event.callId);
      return true;
    }
    if (
      this._ended.has(event.callId) ||
      !["ringing", "accepted", "connected", "dropped", "resumed"].includes(event.event)
    ) {
      return true; // recording.*, report: the trail has them; the table does not change
    }
    let row = this.calls.get(event.callId);
    if (!row) {
      row = {
        callId: event.callId,
        bookingId: data.bookingId ?? null,
        media: data.media ?? null,
        state: data.state ?? "ringing",
        callerName: null,
        calleeName: null,
        callerSide: null,
        baseMs: null,
        baseAt: null,
        dropped: new Set(),
        named: false,
      };
      this.calls.set(event.callId, row);
    }
    row.touched = ++this._generation;
    if (data.state && RANK[data.state] > RANK[row.state]) row.state = data.state;
    if (event.event === "accepted" && live && row.baseAt === null) {
      row.baseMs = 0; // the call's duration runs from its acceptance: now
      row.baseAt = this.now();
    }
    if (event.event === "dropped") row.dropped.add(event.actor);
    if (event.event === "resumed") row.dropped.delete(event.actor);
    return true;
  }

  /** A mark to pass to reconcile(): taken before admin.calls.active is asked. */
  mark() {
    return this._generation;
  }

  /** Settle the table on admin.calls.active's answer (asked after `mark`): calls not in
   *  it leave, unless an event touched them since (they started after the answer was
   *  taken); calls in it join or take its names and duration. */
  reconcile(active, mark) {
    const inProgress = new Set(active.map((call) => call.callId));
    for (const [callId, row] of this.calls) {
      if (!inProgress.has(callId) && row.touched <= mark) this.calls.delete(callId);
    }
    for (const call of active) {
      if (this._ended.has(call.callId)) continue;
      const row = this.calls.get(call.callId) ?? { dropped: new Set(), touched: 0 };
      this.calls.set(call.callId, this.describe(row, call));
    }
  }

  /** Take a call's admin view (admin.calls.get, admin.calls.active) into its row. */
  describe(row, call) {
    Object.assign(row, {
      callId: call.callId,
      bookingId: call.bookingId,
      media: call.media,
      callerName: call.callerName,
      calleeName: call.calleeName,
      callerSide: call.callerSide,
      named: true,
    });
    if (!row.state || RANK[call.state] > RANK[row.state]) row.state = call.state;
    if (call.acceptedAt) {
      // The server's count at its answer, running on from our clock: the operator's
      // clock may be off, the duration is not.
      row.baseMs = call.durationMs;
      row.baseAt = this.now();
    }
    return row;
  }

  /** A call's admin view arrived (admin.calls.get for a call first seen by an event). */
  named(call) {
    const row = this.calls.get(call.callId);
    if (!row || this._ended.has(call.callId)) return;
    if (call.state === "ended") {
      this.calls.delete(call.callId);
      return;
    }
    this.describe(row, call);
  }

  /** The call's running duration now (null while it rings). */
  durationMs(row) {
    if (row.baseAt === null || row.baseAt === undefined) return null;
    return row.baseMs + (this.now() - row.baseAt);
  }

  /** Calls in progress, oldest first. */
  rows() {
    return [...this.calls.values()].sort((a, b) => a.callId - b.callId);
  }

  _remember(id) {
    this._seen.add(id);
    if (this._seen.size > SEEN_KEPT) {
      // Ids grow: the oldest ones left are far outside any replay.
      this._seen.delete(this._seen.values().next().value);
    }
  }
}
