// The operator's own account: the login sessions (auth.sessions) and ending one.

import { $, confirmAction, fill, h, when } from "./ui.js";

export function sessionsView(ctx) {
  const body = $("#sessions-body");

  async function show() {
    const { sessions } = await ctx.client.call("auth.sessions", {});
    fill(body, ...sessions.map(row));
  }

  function row(s) {
    const device = s.device ?? {};
    const what =
      [device.platform, device.model, device.appVersion].filter(Boolean).join(" ") ||
      "unknown device";
    return h(
      "tr",
      { dataset: { sessionId: s.sessionId } },
      h(
        "th",
        { scope: "row" },
        what,
        s.current ? h("strong", { class: "current" }, " (this page)") : null,
      ),
      h("td", {}, s.ip ?? "—"),
      h("td", {}, when(s.createdAt)),
      h("td", {}, when(s.lastUsedAt)),
      h("td", {}, when(s.expiresAt)),
      h(
        "td",
        {},
        h(
          "button",
          { type: "button", class: "danger-outline", onclick: () => revoke(s, what) },
          s.current ? "Log out" : "End session",
          h("span", { class: "visually-hidden" }, ` ${what}`),
        ),
      ),
    );
  }

  async function revoke(s, what) {
    if (s.current) {
      await ctx.logout();
      return;
    }
    const answer = await confirmAction({
      title: "End this session?",
      body: [
        `${what}, logged in from ${s.ip ?? "an unknown address"}.`,
        "Its sockets close at once and its tokens stop working: that device must log in again.",
      ],
      action: "End session",
      danger: true,
    });
    if (answer === null) return;
    try {
      await ctx.client.call("auth.revokeSession", { sessionId: s.sessionId });
      ctx.say("The session was ended.");
      await show();
    } catch (error) {
      ctx.report(error);
    }
  }

  $("#sessions-refresh").addEventListener("click", () => show().catch(ctx.report));
  return { show };
}
