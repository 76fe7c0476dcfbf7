// The marketplace: the overview (admin.stats and its chart), users and providers
// (search, verify / unverify / remove), the reports queue and payments. Every action is
// the server's to allow: the page asks first, says what will happen, and shows the
// server's answer.

import { activityChart, SERIES } from "./chart.js";
import {
  $,
  badge,
  busy,
  confirmAction,
  dayLabel,
  fill,
  h,
  money,
  number,
  showDetail,
  when,
  words,
} from "./ui.js";

// --- Overview -------------------------------------------------------------------------

export function overviewView(ctx) {
  async function show() {
    const stats = await ctx.client.call("admin.stats", {});
    const roles = stats.usersByRole;
    const cards = [
      ["Customers", number(roles.customer)],
      ["Providers", number(roles.provider)],
      ["Admins", number(roles.admin)],
      ["Verified accounts", number(stats.verifiedUsers)],
      ["Active services", number(stats.activeServices)],
      ["Revenue", money(stats.revenuePaise)],
      ["Open reports", number(stats.openReports)],
      ["Bookings", number(Object.values(stats.bookingsByStatus).reduce((a, b) => a + b, 0))],
    ];
    fill(
      $("#stat-cards"),
      ...cards.map(([label, value]) =>
        h("div", { class: "card" }, h("dt", {}, label), h("dd", {}, value)),
      ),
    );
    fill(
      $("#stat-breakdowns"),
      breakdown("Bookings by status", stats.bookingsByStatus),
      breakdown("Listings by status", stats.registrationsByStatus),
      breakdown("Payments by status", stats.paymentsByStatus),
    );
    const days = stats.activityPerDay ?? [];
    fill($("#chart"), activityChart(days));
    fill(
      $("#chart-table"),
      h("caption", {}, `Per day (calendar of ${stats.timezone})`),
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          h("th", { scope: "col" }, "Day"),
          ...SERIES.map((x) => h("th", { scope: "col" }, x.title)),
        ),
      ),
      h(
        "tbody",
        {},
        [...days]
          .reverse()
          .map((d) =>
            h(
              "tr",
              {},
              h("th", { scope: "row" }, dayLabel(d.day)),
              ...SERIES.map((x) => h("td", { class: "num" }, x.format(d[x.key]))),
            ),
          ),
      ),
    );
    fill(
      $("#stats-when"),
      "Counted ",
      when(stats.computedAt),
      ` (kept 30 s). Days are those of ${stats.timezone}.`,
    );
  }

  function breakdown(title, counts) {
    const entries = Object.entries(counts ?? {});
    return h(
      "section",
      { class: "breakdown" },
      h("h3", {}, title),
      entries.length
        ? h(
            "ul",
            {},
            entries.map(([name, n]) => h("li", {}, badge(name), " ", number(n))),
          )
        : h("p", { class: "muted" }, "None yet."),
    );
  }

  $("#overview-refresh").addEventListener("click", (event) =>
    busy(event.currentTarget, show, ctx.report),
  );
  return { show };
}

// --- Users and providers ------------------------------------------------------------

function describeAccount(user) {
  return `${user.fullName ?? "(no name)"} — ${user.phone}, ${user.role}`;
}

/** Verify, unverify or remove an account, after a confirmation saying what it does. */
async function accountAction(ctx, user, action, after) {
  const who = describeAccount(user);
  const texts = {
    verify: {
      title: "Verify this account?",
      body: [
        who,
        "Marks the account verified (callers and callees of calls must be). Logging in verifies an account by itself, unless an admin unverified it.",
      ],
      action: "Verify",
    },
    unverify: {
      title: "Unverify this account?",
      body: [
        who,
        "Marks the account not verified: it can no longer make or receive calls. The mark stays when they log in again, until an admin verifies them.",
      ],
      action: "Unverify",
      danger: true,
    },
    remove: {
      title: "Remove this account for good?",
      body: [
        who,
        "The account is erased as if they deleted it themselves: their unfinished bookings are cancelled (the other side is told), their name, phone, email, addresses, devices, notifications and listings are deleted, they are logged out everywhere, and past bookings, ratings, calls and payments show them as “Deleted user”.",
        "Their phone number (and email) is blocked from logging in or signing up again, under any role.",
        "This cannot be undone.",
      ],
      action: "Remove account",
      danger: true,
    },
  }[action];
  if ((await confirmAction(texts)) === null) return;
  try {
    if (action === "remove") {
      const result = await ctx.client.call("admin.users.remove", { userId: user.id });
      ctx.say(`${user.fullName ?? "The account"} was removed; ${result.revoked} session(s) ended.`);
    } else {
      const result = await ctx.client.call("admin.users.verify", {
        userId: user.id,
        verified: action === "verify",
      });
      ctx.say(
        `${result.fullName ?? "The account"} is now ${result.isVerified ? "verified" : "not verified"}.`,
      );
    }
    await after();
  } catch (error) {
    ctx.report(error);
  }
}

function accountButtons(ctx, user, after) {
  if (user.role === "admin") {
    // The server refuses these on admins too (operators make and unmake admins).
    return h("span", { class: "muted" }, "Admins are managed by operators");
  }
  const label = user.fullName ?? user.phone;
  const button = (action, text, cls = "secondary") =>
    h(
      "button",
      {
        type: "button",
        class: cls,
        dataset: { action },
        onclick: () => accountAction(ctx, user, action, after),
      },
      text,
      h("span", { class: "visually-hidden" }, ` ${label}`),
    );
  return h(
    "div",
    { class: "actions" },
    user.isVerified ? button("unverify", "Unverify") : button("verify", "Verify"),
    button("remove", "Remove", "danger-outline"),
  );
}

/** A searchable list of accounts, a page at a time ("More"). */
function accountList(ctx, { form, body, more, empty, method, key, filters, row }) {
  let cursor = null;
  async function load(reset) {
    if (reset) cursor = null;
    const params = { ...filters(), limit: 50, ...(cursor && !reset ? { cursor } : {}) };
    const page = await ctx.client.call(method, params);
    if (reset) fill(body);
    for (const user of page[key]) body.append(row(user));
    cursor = page.nextCursor;
    more.hidden = !cursor;
    empty.hidden = body.children.length > 0;
  }
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    busy(form.querySelector("button[type=submit]"), () => load(true), ctx.report);
  });
  more.addEventListener("click", () => busy(more, () => load(false), ctx.report));
  return { show: () => load(true) };
}

function optional(value) {
  return value === "" ? undefined : value;
}

export function usersView(ctx) {
  const list = accountList(ctx, {
    form: $("#users-form"),
    body: $("#users-body"),
    more: $("#users-more"),
    empty: $("#users-empty"),
    method: "admin.users.list",
    key: "users",
    filters: () => ({
      search: optional($("#users-search").value.trim()),
      role: optional($("#users-role").value),
      verified: { yes: true, no: false }[$("#users-verified").value],
    }),
    row: (user) =>
      h(
        "tr",
        { dataset: { userId: user.id } },
        h("th", { scope: "row" }, user.fullName ?? h("span", { class: "muted" }, "(no name)")),
        h("td", {}, user.phone),
        h("td", {}, user.role),
        h(
          "td",
          { class: "verified" },
          user.isVerified ? badge("verified") : badge("not verified", "unverified"),
        ),
        h("td", {}, user.isActive ? "active" : badge("inactive")),
        h("td", { class: "num" }, number(user.bookings?.total)),
        h("td", {}, when(user.createdAt, "day")),
        h("td", {}, when(user.lastLoginAt)),
        h(
          "td",
          {},
          accountButtons(ctx, user, () => list.show()),
        ),
      ),
  });
  return list;
}

export function providersView(ctx) {
  const list = accountList(ctx, {
    form: $("#providers-form"),
    body: $("#providers-body"),
    more: $("#providers-more"),
    empty: $("#providers-empty"),
    method: "admin.providers.list",
    key: "providers",
    filters: () => ({
      search: optional($("#providers-search").value.trim()),
      verified: { yes: true, no: false }[$("#providers-verified").value],
    }),
    row: (p) =>
      h(
        "tr",
        { dataset: { userId: p.id } },
        h("th", { scope: "row" }, p.fullName ?? h("span", { class: "muted" }, "(no name)")),
        h("td", {}, p.phone),
        h(
          "td",
          { class: "verified" },
          p.isVerified ? badge("verified") : badge("not verified", "unverified"),
        ),
        h(
          "td",
          {},
          p.listings.length
            ? h(
                "ul",
                { class: "listings" },
                p.listings.map((l) =>
                  h(
                    "li",
                    {},
                    `${l.serviceSlug} #${l.providerServiceId} `,
                    badge(l.status),
                    l.activeUntil
                      ? h("span", { class: "muted" }, " until ", when(l.activeUntil, "day"))
                      : null,
                  ),
                ),
              )
            : h("span", { class: "muted" }, "No listing"),
        ),
        h("td", {}, when(p.createdAt, "day")),
        h(
          "td",
          {},
          accountButtons(ctx, { ...p, role: "provider" }, () => list.show()),
        ),
      ),
  });
  return list;
}

// --- Reports ------------------------------------------------------------------------------

const REPORT_STATUSES = ["open", "resolved", "closed"];

export function reportsView(ctx) {
  const body = $("#reports-body");
  const more = $("#reports-more");
  const selected = new Set();
  let cursor = null;

  function filters() {
    return {
      status: optional($("#reports-status").value),
      reporterSide: optional($("#reports-side").value),
    };
  }

  async function load(reset) {
    if (reset) {
      cursor = null;
      selected.clear();
    }
    const page = await ctx.client.call("admin.reports.list", {
      ...filters(),
      limit: 50,
      ...(cursor && !reset ? { cursor } : {}),
    });
    if (reset) fill(body);
    for (const report of page.reports) body.append(row(report));
    cursor = page.nextCursor;
    more.hidden = !cursor;
    $("#reports-empty").hidden = body.children.length > 0;
    updateBulk();
  }

  function row(r) {
    const pick = h("input", {
      type: "checkbox",
      "aria-label": `Select report ${r.id}`,
      onchange: (event) => {
        if (event.currentTarget.checked) selected.add(r.id);
        else selected.delete(r.id);
        updateBulk();
      },
    });
    const status = h(
      "select",
      { "aria-label": `Status of report ${r.id}` },
      REPORT_STATUSES.map((s) => h("option", { value: s, selected: s === r.status }, s)),
    );
    const save = h(
      "button",
      {
        type: "button",
        class: "secondary",
        onclick: (event) =>
          busy(
            event.currentTarget,
            async () => {
              const changed = await ctx.client.call("admin.reports.setStatus", {
                reportId: r.id,
                status: status.value,
              });
              ctx.say(`Report ${r.id} is ${changed.status}; the reporter is told.`);
              await load(true);
            },
            ctx.report,
          ),
      },
      "Save",
      h("span", { class: "visually-hidden" }, ` status of report ${r.id}`),
    );
    const evidence = (r.evidence ?? []).map((image, i) =>
      h("a", { href: image.url, target: "_blank", rel: "noopener noreferrer" }, `Image ${i + 1}`),
    );
    return h(
      "tr",
      { dataset: { reportId: r.id } },
      h("td", {}, pick),
      h("td", {}, when(r.createdAt)),
      h("td", {}, r.reporterName ?? "—", h("span", { class: "side" }, ` (${r.reporterSide})`)),
      h("td", {}, r.reportedName ?? "—"),
      h(
        "td",
        {},
        r.serviceName ?? "—",
        r.bookingId ? h("span", { class: "muted" }, ` booking ${r.bookingId}`) : null,
      ),
      h("th", { scope: "row" }, r.reason),
      h(
        "td",
        { class: "text" },
        r.description,
        evidence.length ? h("div", { class: "evidence" }, evidence) : null,
      ),
      h("td", {}, badge(r.status)),
      h("td", {}, h("div", { class: "actions" }, status, save)),
    );
  }

  function updateBulk() {
    const n = selected.size;
    $("#reports-selected").textContent = n ? `${n} selected` : "None selected";
    $("#reports-apply").disabled = n === 0;
  }

  $("#reports-form").addEventListener("submit", (event) => {
    event.preventDefault();
    busy(event.submitter, () => load(true), ctx.report);
  });
  more.addEventListener("click", () => busy(more, () => load(false), ctx.report));
  $("#reports-apply").addEventListener("click", async (event) => {
    const status = $("#reports-bulk-status").value;
    const ids = [...selected];
    const answer = await confirmAction({
      title: `Mark ${ids.length} report(s) ${status}?`,
      body: [
        `Reports ${ids.join(", ")} become “${status}”; each reporter whose report changes is told.`,
      ],
      action: `Mark ${status}`,
    });
    if (answer === null) return;
    await busy(
      event.target,
      async () => {
        const result = await ctx.client.call("admin.reports.setStatusMany", {
          reportIds: ids,
          status,
        });
        const unchanged = result.unchangedIds.length
          ? `; ${result.unchangedIds.length} had it already`
          : "";
        ctx.say(`${result.changed.length} report(s) marked ${status}${unchanged}.`);
        await load(true);
      },
      ctx.report,
    );
  });
  return { show: () => load(true) };
}

// --- Payments -------------------------------------------------------------------------------

export function paymentsView(ctx) {
  const body = $("#payments-body");
  const more = $("#payments-more");
  let cursor = null;

  async function load(reset) {
    const status = optional($("#payments-status").value);
    const page = await ctx.client.call("admin.payments.list", {
      status,
      limit: 50,
      ...(cursor && !reset ? { cursor } : {}),
    });
    if (reset) fill(body);
    for (const p of page.payments) body.append(row(p));
    cursor = page.nextCursor;
    more.hidden = !cursor;
    $("#payments-empty").hidden = body.children.length > 0;
  }

  function row(p) {
    return h(
      "tr",
      { dataset: { orderId: p.orderId } },
      h("th", { scope: "row" }, p.orderId),
      h(
        "td",
        {},
        words(p.product),
        p.providerServiceId
          ? h("span", { class: "muted" }, ` listing ${p.providerServiceId}`)
          : null,
      ),
      h("td", { class: "num" }, money(p.amountPaise)),
      h("td", {}, badge(p.status)),
      h("td", {}, p.userId ?? "—"),
      h("td", {}, when(p.createdAt)),
      h("td", {}, when(p.paidAt)),
      h(
        "td",
        {},
        h(
          "button",
          { type: "button", class: "secondary", onclick: () => details(p.orderId) },
          "Details",
          h("span", { class: "visually-hidden" }, ` of order ${p.orderId}`),
        ),
      ),
    );
  }

  async function details(orderId) {
    let detail;
    try {
      detail = await ctx.client.call("admin.payments.get", { orderId });
    } catch (error) {
      ctx.report(error);
      return;
    }
    const p = detail.payment;
    const facts = [
      ["Product", words(p.product)],
      ["Amount", money(p.amountPaise)],
      ["Status", p.status],
      ["Payer (user id)", p.userId ?? "—"],
      ["Gateway", `${p.gateway} (${p.merchantId})`],
      ["Gateway transaction", p.gatewayTxnId ?? "—"],
      ["Bank transaction", p.bankTxnId ?? "—"],
      ["Mode", p.paymentMode ?? "—"],
      ["Gateway's result", [p.resultCode, p.resultMessage].filter(Boolean).join(" ") || "—"],
      [
        "Period bought",
        p.periodStart
          ? [when(p.periodStart), " – ", p.periodEnd ? when(p.periodEnd) : "no end"]
          : "—",
      ],
      ["Created", when(p.createdAt)],
      ["Paid", when(p.paidAt)],
      ["Refunded", when(p.refundedAt)],
      ["Refund reason", p.refundReason ?? "—"],
      ["Status checks", p.checks],
    ];
    const refund =
      p.status === "paid"
        ? h(
            "button",
            { type: "button", class: "danger", onclick: () => refundPayment(p) },
            "Refund…",
          )
        : null;
    showDetail(
      `Payment ${p.orderId}`,
      h(
        "dl",
        { class: "facts" },
        facts.flatMap(([term, value]) => [h("dt", {}, term), h("dd", {}, value)]),
      ),
      refund,
      table("Status changes", ["When", "From", "To", "Source"], detail.changes, (c) => [
        when(c.at),
        c.fromStatus ?? "—",
        c.toStatus,
        c.source,
      ]),
      table(
        "Calls to the gateway",
        ["When", "Endpoint", "HTTP", "Time", "Error"],
        detail.gatewayCalls,
        (c) => [
          when(c.at),
          c.endpoint,
          c.httpStatus ?? "—",
          `${Math.round(c.latencyMs)} ms`,
          c.error ?? "—",
        ],
      ),
      table("Security events", ["When", "Kind", "From"], detail.securityEvents, (e) => [
        when(e.at),
        words(e.kind),
        e.sourceIp ?? "—",
      ]),
    );
  }

  async function refundPayment(p) {
    const reason = h("input", {
      id: "refund-reason",
      name: "reason",
      required: true,
      minlength: 3,
      maxlength: 200,
    });
    const answer = await confirmAction({
      title: `Refund ${money(p.amountPaise)}?`,
      body: [
        `Order ${p.orderId} (${words(p.product)}) is refunded in full through the payment gateway.`,
        "What it paid for ends now (a listing leaves search at once); the payment is “refund pending” until the gateway settles it, and the payer is told.",
      ],
      fields: [h("label", { for: "refund-reason" }, "Reason (the payer does not see it)"), reason],
      action: "Refund in full",
      danger: true,
    });
    if (answer === null) return;
    try {
      const refunded = await ctx.client.call(
        "admin.payments.refund",
        { orderId: p.orderId, reason: answer.reason.trim() },
        { idempotent: true, timeoutMs: 60_000 },
      );
      ctx.say(`Order ${p.orderId} is ${words(refunded.status)}.`);
      await load(true);
      await details(p.orderId);
    } catch (error) {
      ctx.report(error);
    }
  }

  $("#payments-form").addEventListener("submit", (event) => {
    event.preventDefault();
    busy(event.submitter, () => load(true), ctx.report);
  });
  more.addEventListener("click", () => busy(more, () => load(false), ctx.report));
  return { show: () => load(true) };
}

function table(caption, heads, items, cells) {
  if (!items.length) return h("p", { class: "muted" }, `${caption}: none.`);
  return h(
    "table",
    { class: "data compact" },
    h("caption", {}, caption),
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        heads.map((t) => h("th", { scope: "col" }, t)),
      ),
    ),
    h(
      "tbody",
      {},
      items.map((item) =>
        h(
          "tr",
          {},
          cells(item).map((value) => h("td", {}, value)),
        ),
      ),
    ),
  );
}
