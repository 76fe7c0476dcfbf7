// Recordings: the list (admin.recordings.list) and a recording's players. Each leg and
// the mixed file plays in an <audio> element through a signed link (recordings.link,
// valid minutes, for this admin only) asked for when the operator opens it; the
// download answers Range requests, so the player seeks.

import { $, badge, duration, fill, h, number, showDetail, when } from "./ui.js";

const LEG_NAMES = { mixed: "Both parties (mixed)", caller: "Caller's leg", callee: "Callee's leg" };

/** What a recording holds, with a player for each file it has. */
export function recordingPanel(ctx, recording) {
  const legs = new Map(recording.legs.map((leg) => [leg.leg, leg]));
  const playable = ["ready", "failed"].includes(recording.state);
  const files = [];
  if (recording.mixed) files.push(["mixed", recording.mixed.durationMs]);
  for (const name of ["caller", "callee"]) {
    if (legs.has(name) && !legs.get(name).error) files.push([name, legs.get(name).durationMs]);
  }
  const table = h(
    "table",
    { class: "data compact" },
    h("caption", {}, "Legs"),
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        ...["Leg", "Duration", "Packets", "Lost packets", "Starts at", "Problem"].map((t) =>
          h("th", { scope: "col" }, t),
        ),
      ),
    ),
    h(
      "tbody",
      {},
      recording.legs.map((leg) =>
        h(
          "tr",
          {},
          h("th", { scope: "row" }, leg.leg),
          h("td", { class: "num" }, duration(leg.durationMs)),
          h("td", { class: "num" }, number(leg.packets)),
          h("td", { class: "num", dataset: { lost: leg.leg } }, number(leg.lost)),
          h("td", { class: "num" }, duration(leg.offsetMs)),
          h("td", {}, leg.error ?? "—"),
        ),
      ),
    ),
  );
  const players = h("div", { class: "players" });
  for (const [leg, ms] of files) {
    const holder = h("div", { class: "player", dataset: { leg } });
    const listen = h(
      "button",
      {
        type: "button",
        class: "secondary",
        onclick: () => loadPlayer(ctx, recording, leg, holder, listen),
      },
      `Listen: ${LEG_NAMES[leg]} (${duration(ms)})`,
    );
    holder.append(listen);
    players.append(holder);
  }
  return h(
    "section",
    {
      class: "recording",
      dataset: { recordingId: recording.recordingId },
      "aria-label": `Recording ${recording.recordingId}`,
    },
    h(
      "p",
      {},
      badge(recording.state),
      ` Recording ${recording.recordingId} of call ${recording.callId}: `,
      recording.durationMs === null ? "duration not known yet" : duration(recording.durationMs),
      recording.error ? ` — ${recording.error}` : "",
    ),
    table,
    playable
      ? players
      : h(
          "p",
          { class: "muted" },
          "The call is still being recorded: its files come when it ends.",
        ),
    playable && !recording.mixed && recording.state === "ready"
      ? h("p", { class: "muted" }, "The mixed file is made shortly after the call.")
      : null,
  );
}

async function loadPlayer(ctx, recording, leg, holder, button) {
  button.disabled = true;
  try {
    const link = await ctx.client.call("recordings.link", {
      recordingId: recording.recordingId,
      leg,
    });
    const audio = h("audio", {
      controls: true,
      preload: "auto",
      src: link.url,
      "aria-label": `${LEG_NAMES[leg]} of recording ${recording.recordingId}`,
    });
    audio.addEventListener("error", () => {
      ctx.report(
        new Error(
          `The ${LEG_NAMES[leg].toLowerCase()} did not play: its link may have expired. Open it again.`,
        ),
      );
      button.disabled = false;
      button.hidden = false;
      audio.remove();
    });
    button.hidden = true;
    holder.append(h("p", { class: "leg-name" }, LEG_NAMES[leg]), audio);
    audio.focus();
  } catch (error) {
    button.disabled = false;
    ctx.report(error);
  }
}

/** The recordings of one call (for its trail). */
export async function recordingsOfCall(ctx, callId) {
  const page = await ctx.client.call("admin.recordings.list", { callId, limit: 10 });
  return page.recordings;
}

export function showRecording(ctx, recording) {
  showDetail(`Recording ${recording.recordingId}`, recordingPanel(ctx, recording));
}

/** The Recordings view: newest first, a page at a time. */
export function recordingsView(ctx) {
  const body = $("#recordings-body");
  const more = $("#recordings-more");
  let cursor = null;

  async function load(reset) {
    if (reset) {
      cursor = null;
      fill(body);
    }
    const page = await ctx.client.call("admin.recordings.list", {
      limit: 20,
      ...(cursor ? { cursor } : {}),
    });
    for (const r of page.recordings) body.append(row(r));
    cursor = page.nextCursor;
    more.hidden = !cursor;
    $("#recordings-empty").hidden = body.children.length > 0;
  }

  function row(r) {
    const lost = r.legs.map((leg) => `${leg.leg} ${number(leg.lost)}`).join(", ") || "—";
    return h(
      "tr",
      { dataset: { recordingId: r.recordingId } },
      h("td", { class: "num" }, r.recordingId),
      h("td", { class: "num" }, r.callId),
      h("td", { class: "num" }, r.bookingId ?? "—"),
      h("td", {}, badge(r.state)),
      h("td", { class: "num" }, duration(r.durationMs)),
      h("td", {}, lost),
      h("td", {}, when(r.startedAt)),
      h(
        "td",
        {},
        h(
          "button",
          { type: "button", class: "secondary", onclick: () => showRecording(ctx, r) },
          "Open",
          h("span", { class: "visually-hidden" }, ` recording ${r.recordingId}`),
        ),
      ),
    );
  }

  more.addEventListener("click", () => load(false).catch(ctx.report));
  $("#recordings-refresh").addEventListener("click", () => load(true).catch(ctx.report));
  return { show: () => load(true) };
}
