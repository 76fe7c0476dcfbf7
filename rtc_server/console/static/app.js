// The admin console: login by SMS code (admins only), then the views. Everything goes
// through the socket port with the project's JavaScript client (vendor/rtc-client.js,
// a copy of clients/js/src/client.js). Tokens stay in memory; the refresh token is kept
// in this tab's sessionStorage (never localStorage) so a reload resumes the session.

import { RtcClient } from "./vendor/rtc-client.js";
import { sessionsView } from "./account.js";
import { callsView } from "./calls.js";
import { overviewView, paymentsView, providersView, reportsView, usersView } from "./market.js";
import { recordingsView } from "./recordings.js";
import { $, describeError, fill, h, ZONE } from "./ui.js";

const PREFIX = "buildxpert-console:";
const NOTICE = PREFIX + "notice"; // a message for the page after a reload
const VIEWS = [
  "calls",
  "recordings",
  "overview",
  "users",
  "providers",
  "reports",
  "payments",
  "sessions",
];
const STATES = {
  connecting: "Connecting…",
  open: "Connected",
  authenticated: "Live",
  reconnecting: "Reconnecting…",
  closed: "Disconnected",
};

// The refresh token's only home: this tab's session storage.
const tabStorage = {
  get: (key) => sessionStorage.getItem(PREFIX + key),
  set: (key, value) => sessionStorage.setItem(PREFIX + key, value),
  remove: (key) => sessionStorage.removeItem(PREFIX + key),
};

function report(error) {
  const text =
    error instanceof Error && !error.code && !error.data ? error.message : describeError(error);
  // Over an open dialog the page behind is inert and hidden: say it in the dialog.
  const dialog = [...document.querySelectorAll("dialog[open]")].pop();
  if (dialog) {
    const line =
      dialog.querySelector(".dialog-error") ??
      h("p", { class: "dialog-error error", role: "alert" });
    line.textContent = text;
    dialog.prepend(line);
    return;
  }
  const notice = $("#notice");
  fill(
    notice,
    h("p", {}, text),
    h(
      "button",
      { type: "button", class: "secondary", onclick: () => (notice.hidden = true) },
      "Dismiss",
    ),
  );
  notice.hidden = false;
}

function say(text) {
  $("#status").textContent = text;
}

/** Start over with a fresh page (and nothing in memory), telling the operator why. */
function restart(message) {
  if (message) sessionStorage.setItem(NOTICE, message);
  location.reload();
}

async function main() {
  $("#zone").textContent = `Times in ${ZONE}`;
  const config = await (await fetch("config.json", { cache: "no-store" })).json();
  const client = new RtcClient({ url: config.socketUrl, storage: tabStorage });
  $("#socket-help").textContent =
    `The server's socket (${config.socketUrl}) does not answer this page. If the server runs, ` +
    `its operators must list this page's origin, ${location.origin}, in server.allowed_origins.`;
  let loggedIn = false;
  let reconnected = false;

  const ctx = {
    client,
    report,
    say,
    async logout() {
      try {
        await client.logout(); // auth.logout, and the tokens forgotten (storage too)
      } catch {
        // The client forgot them anyway; the session expires on the server.
      }
      restart("You are logged out.");
    },
  };
  const calls = callsView(ctx);
  const views = {
    calls,
    recordings: recordingsView(ctx),
    overview: overviewView(ctx),
    users: usersView(ctx),
    providers: providersView(ctx),
    reports: reportsView(ctx),
    payments: paymentsView(ctx),
    sessions: sessionsView(ctx),
  };

  client.onState((state) => {
    const line = $("#connection");
    line.textContent = STATES[state] ?? state;
    line.dataset.state = state;
    if (state === "reconnecting" || state === "connecting") reconnected = true;
    // Cannot reach the socket: most often this page's origin is not allowed there.
    if (state === "reconnecting" && !loggedIn) $("#socket-help").hidden = false;
    if (state === "open" || state === "authenticated") $("#socket-help").hidden = true;
    if (state === "authenticated" && loggedIn && reconnected) {
      reconnected = false;
      // The server forgot this socket's watch with the old one: watch again (the
      // replay fills the gap, the board drops what it has shown).
      calls.watch().catch((error) => {
        if (error?.name !== "disconnected") report(error); // dropped again: the next one watches
      });
    }
  });
  client.on("auth", () =>
    restart("Your session ended (logged out, revoked, or expired): log in again."),
  );
  client.on("resync", () => refresh());

  function refresh() {
    const name = current();
    if (loggedIn && name !== "calls") views[name].show?.().catch(report);
  }

  function current() {
    const name = location.hash.slice(1);
    return VIEWS.includes(name) ? name : "calls";
  }

  function showView(focus) {
    const name = current();
    for (const view of VIEWS) $(`#view-${view}`).hidden = view !== name;
    for (const link of document.querySelectorAll("#tabs a")) {
      if (link.getAttribute("href") === `#${name}`) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
    $("#notice").hidden = true;
    $("#status").textContent = "";
    if (focus) $(`#view-${name} h1`).focus();
    if (name !== "calls") views[name].show().catch(report);
  }

  async function enter() {
    const user = client.user;
    if (user?.role !== "admin") {
      // The server refuses admin methods to such a session anyway; the page says so.
      const role = user?.role ?? "unknown";
      try {
        await client.logout();
      } catch {
        // The client forgot the tokens anyway.
      }
      restart(`This is a ${role} account: the console is for admin accounts only.`);
      return;
    }
    loggedIn = true;
    reconnected = false;
    $("#view-login").hidden = true;
    $("#tabs").hidden = false;
    $("#who").hidden = false;
    $("#who-name").textContent = user.fullName ?? user.phone ?? "admin";
    await calls.watch();
    showView(false);
  }

  window.addEventListener("hashchange", () => loggedIn && showView(true));
  $("#logout").addEventListener("click", () => ctx.logout());
  loginForms(client, enter);

  const notice = sessionStorage.getItem(NOTICE);
  if (notice) {
    sessionStorage.removeItem(NOTICE);
    $("#login-message").textContent = notice;
  }
  try {
    await client.resume(); // with this tab's refresh token, if it has one
    await enter();
    return;
  } catch (error) {
    if (error?.name !== "no_session")
      $("#login-message").textContent = `Log in again: ${describeError(error)}`;
  }
  showLogin();
  // Open the socket now: the header says whether the server can be reached.
  client.call("system.ping").catch(() => {});
}

function showLogin() {
  $("#view-login").hidden = false;
  $("#phone").focus();
}

function loginForms(client, enter) {
  const phoneForm = $("#phone-form");
  const codeForm = $("#code-form");
  const error = $("#login-error");
  let phone = "";

  phoneForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    const button = event.submitter;
    button.disabled = true;
    try {
      phone = $("#phone").value.trim();
      const sent = await client.requestOtp(phone, "admin");
      phoneForm.hidden = true;
      codeForm.hidden = false;
      $("#login-message").textContent =
        `If ${phone} belongs to an admin account, a code is on its way by SMS (valid ${Math.round(sent.expiresInSeconds / 60)} minutes).`;
      $("#code").value = "";
      $("#code").focus();
    } catch (failure) {
      error.textContent = describeError(failure);
    } finally {
      button.disabled = false;
    }
  });

  codeForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    const button = event.submitter;
    button.disabled = true;
    try {
      await client.verifyOtp(phone, "admin", $("#code").value.trim(), {
        device: { platform: "web", model: "admin console" },
      });
      await enter();
    } catch (failure) {
      error.textContent = describeError(failure);
      $("#code").focus();
    } finally {
      button.disabled = false;
    }
  });

  $("#other-phone").addEventListener("click", () => {
    codeForm.hidden = true;
    phoneForm.hidden = false;
    error.textContent = "";
    $("#login-message").textContent = "";
    $("#phone").focus();
  });
}

main().catch((error) => {
  report(error);
  showLogin();
});
