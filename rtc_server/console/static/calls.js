// Live calls: the table of calls in progress (updated as admin.call.event arrives, no
// polling; durations tick each second), the latest call events, and a call's trail.

import { CallBoard } from "./board.js";
import { recordingPanel, recordingsOfCall } from "./recordings.js";
import { $, badge, duration, fill, h, number, showDetail, when, words } from "./ui.js";

const ACTORS = { caller: "caller", callee: "callee", server: "server" };

export function callsView(ctx) {
  const board = new CallBoard();
  const body = $("#calls-body");
  const feed = $("#feed");
  const rows = new Map(); // callId → <tr>
  const naming = new Set(); // callIds whose admin.calls.get is on its way

  function party(name, side) {
    return h("span", {}, name ?? "…", side ? h("span", { class: "side" }, ` (${side})`) : null);
  }

  function render() {
    const current = board.rows();
    const keep = new Set(current.map((row) => row.callId));
    for (const [callId, tr] of rows) {
      if (!keep.has(callId)) {
        tr.remove();
        rows.delete(callId);
      }
    }
    let previous = null;
    for (const row of current) {
      let tr = rows.get(row.callId);
      if (!tr) {
        tr = h("tr", { dataset: { callId: row.callId } });
        rows.set(row.callId, tr);
      }
      const calleeSide = row.callerSide
        ? row.callerSide === "customer"
          ? "provider"
          : "customer"
        : null;
      const dropped = [...row.dropped].map((who) => `${who} reconnecting`).join(", ");
      // Rebuilt only when something shown changed (a focused button stays focused).
      const shown = JSON.stringify([
        row.callerName,
        row.calleeName,
        row.callerSide,
        row.bookingId,
        row.media,
        row.state,
        dropped,
      ]);
      // In order, moving a row only when it is out of place (moving loses focus).
      const place = previous ? previous.nextElementSibling : body.firstElementChild;
      if (place !== tr) body.insertBefore(tr, place);
      previous = tr;
      if (!row.named && !naming.has(row.callId)) name(row.callId);
      if (tr.dataset.shown === shown) continue;
      tr.dataset.shown = shown;
      fill(
        tr,
        h("th", { scope: "row", class: "num" }, row.callId),
        h("td", {}, party(row.callerName, row.callerSide)),
        h("td", {}, party(row.calleeName, calleeSide)),
        h("td", { class: "num" }, row.bookingId ?? "—"),
        h("td", {}, row.media ?? "—"),
        h(
          "td",
          { class: "state" },
          badge(row.state),
          dropped ? h("span", { class: "muted" }, ` ${dropped}`) : null,
        ),
        h("td", { class: "num duration" }, duration(board.durationMs(row))),
        h(
          "td",
          {},
          h(
            "button",
            { type: "button", class: "secondary", onclick: () => showTrail(ctx, row.callId) },
            "Trail",
            h("span", { class: "visually-hidden" }, ` of call ${row.callId}`),
          ),
        ),
      );
    }
    $("#calls-empty").hidden = current.length > 0;
    $("#calls-count").textContent =
      current.length === 1 ? "1 call in progress" : `${number(current.length)} calls in progress`;
    fill(feed, ...board.feed.map(feedItem));
    $("#feed-empty").hidden = board.feed.length > 0;
    feed.hidden = board.feed.length === 0;
  }

  function feedItem(event) {
    const data = event.data ?? {};
    const detail = [];
    if (data.reason) detail.push(words(data.reason));
    if (data.durationMs !== undefined) detail.push(duration(data.durationMs));
    if (event.event === "report") detail.push(`quality ${data.quality}/5`);
    if (event.event === "recording.failed") detail.push(data.error ?? "");
    return h(
      "li",
      { dataset: { eventId: event.id, callId: event.callId, event: event.event } },
      when(event.at, "time"),
      " ",
      h("strong", {}, `Call ${event.callId}`),
      ` ${words(event.event)}`,
      event.actor
        ? h("span", { class: "muted" }, ` by ${ACTORS[event.actor] ?? event.actor}`)
        : null,
      detail.length ? ` — ${detail.join(", ")}` : "",
    );
  }

  // A call first seen by an event: its parties' names, once (not polling).
  async function name(callId) {
    naming.add(callId);
    try {
      const { call } = await ctx.client.call("admin.calls.get", { callId });
      board.named(call);
      render();
    } catch (error) {
      if (error?.name !== "not_found") ctx.report(error);
    } finally {
      naming.delete(callId);
    }
  }

  function tick() {
    for (const row of board.rows()) {
      const cell = rows.get(row.callId)?.querySelector(".duration");
      if (cell) cell.textContent = duration(board.durationMs(row));
    }
  }

  ctx.client.on("admin.call.event", (event) => {
    if (board.apply(event, { live: true })) render();
  });

  /** Watch (again, after each reconnect): the replay, then the calls in progress. */
  async function watch() {
    const { replayed } = await ctx.client.call("admin.calls.watch", {});
    for (const event of replayed) board.apply(event, { live: false });
    const mark = board.mark();
    const { calls } = await ctx.client.call("admin.calls.active", {});
    board.reconcile(calls, mark);
    render();
  }

  setInterval(tick, 1000);
  $("#call-lookup").addEventListener("submit", (event) => {
    event.preventDefault();
    const callId = Number($("#call-id").value);
    if (callId > 0) showTrail(ctx, callId);
  });
  return { watch, board };
}

/** A call's full trail (admin.calls.get) with its recordings, in the detail dialog. */
export async function showTrail(ctx, callId) {
  let detail;
  let recordings;
  try {
    [detail, recordings] = await Promise.all([
      ctx.client.call("admin.calls.get", { callId }),
      recordingsOfCall(ctx, callId),
    ]);
  } catch (error) {
    ctx.report(error);
    return;
  }
  const c = detail.call;
  const calleeSide = c.callerSide === "customer" ? "provider" : "customer";
  const facts = h(
    "dl",
    { class: "facts" },
    ...fact("Caller", `${c.callerName ?? "—"} (${c.callerSide})`),
    ...fact("Callee", `${c.calleeName ?? "—"} (${calleeSide})`),
    ...fact("Booking", c.bookingId ?? "—"),
    ...fact("Media", `${c.media}, ${c.policy}`),
    ...fact(
      "State",
      c.endReason
        ? `${c.state}: ${words(c.endReason)}${c.endedBy ? ` by ${c.endedBy}` : ""}`
        : c.state,
    ),
    ...fact("Started", when(c.createdAt)),
    ...fact("Answered", when(c.acceptedAt)),
    ...fact("Connected", when(c.connectedAt)),
    ...fact("Ended", when(c.endedAt)),
    ...fact("Duration", duration(c.durationMs)),
    ...fact("Instance", c.instanceId),
  );
  const trail = h(
    "table",
    { class: "data compact trail" },
    h("caption", {}, "Trail"),
    h(
      "thead",
      {},
      h("tr", {}, ...["Time", "Event", "By", "Details"].map((t) => h("th", { scope: "col" }, t))),
    ),
    h(
      "tbody",
      {},
      detail.events.map((e) =>
        h(
          "tr",
          { dataset: { eventId: e.id } },
          h("td", {}, when(e.at)),
          h("th", { scope: "row" }, words(e.event)),
          h("td", {}, e.actor),
          h("td", {}, eventDetails(e)),
        ),
      ),
    ),
  );
  showDetail(
    `Call ${c.callId}`,
    facts,
    trail,
    h("h3", {}, "Recordings"),
    recordings.length
      ? recordings.map((r) => recordingPanel(ctx, r))
      : h("p", { class: "muted" }, "No recording of this call."),
  );
}

function fact(term, value) {
  return [h("dt", {}, term), h("dd", {}, value)];
}

function eventDetails(event) {
  const data = event.data ?? {};
  if (event.event === "report") {
    const metrics = Object.entries(data.metrics ?? {}).map(([k, v]) => `${k} ${v}`);
    return [
      `Quality ${data.quality}/5`,
      data.endReason ? `, ended: ${data.endReason}` : "",
      metrics.length ? `; ${metrics.join(", ")}` : "",
    ].join("");
  }
  if (event.event === "recording.ready") {
    const lost = (data.legs ?? []).map((leg) => `${leg.leg} lost ${leg.lost}`).join(", ");
    return `${data.state ?? ""} ${duration(data.durationMs)}${lost ? `; ${lost}` : ""}`;
  }
  const parts = [];
  if (data.state && data.state !== event.event) parts.push(data.state);
  if (data.reason) parts.push(words(data.reason));
  if (data.durationMs !== undefined) parts.push(duration(data.durationMs));
  if (data.error) parts.push(data.error);
  return parts.join(", ") || "—";
}
