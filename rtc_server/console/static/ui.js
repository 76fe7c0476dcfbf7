// Small helpers of the console's views: building DOM without HTML strings (text is
// always text: nothing the server sends is parsed as markup), formatting in the
// operator's time zone, errors in words, and the modal dialogs.

/**
 * An element: h("td", {class: "num", dataset: {id: 3}}, "text", otherNode).
 * Attributes starting with "on" are listeners; `false`/null attributes are left out.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs ?? {})) {
    if (value === false || value === null || value === undefined) continue;
    if (name === "dataset") Object.assign(el.dataset, value);
    else if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "class") el.className = value;
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
}

/** Replace an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export const $ = (selector, root = document) => root.querySelector(selector);

// --- Time and numbers, in the operator's zone and language --------------------------

export const ZONE = Intl.DateTimeFormat().resolvedOptions().timeZone;
const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });
const timeOnly = new Intl.DateTimeFormat(undefined, { timeStyle: "medium" });
const dayOnly = new Intl.DateTimeFormat(undefined, { dateStyle: "medium" });
const rupees = new Intl.NumberFormat("en-IN", { style: "currency", currency: "INR" });
const count = new Intl.NumberFormat();

/** A server time (ISO 8601 UTC) as the operator reads it, in a <time> element. */
export function when(iso, style = "full") {
  if (!iso) return "—";
  const date = new Date(iso);
  const format = style === "time" ? timeOnly : style === "day" ? dayOnly : dateTime;
  return h(
    "time",
    { datetime: iso, title: dateTime.format(date) + " (" + ZONE + ")" },
    format.format(date),
  );
}

/** A day of the server's calendar ("2026-11-26") as a short label. */
export function dayLabel(day) {
  const [y, m, d] = day.split("-").map(Number);
  return new Intl.DateTimeFormat(undefined, {
    day: "numeric",
    month: "short",
    timeZone: "UTC",
  }).format(new Date(Date.UTC(y, m - 1, d)));
}

export const money = (paise) => rupees.format((paise ?? 0) / 100);
export const number = (n) => count.format(n ?? 0);

/** Milliseconds as m:ss (h:mm:ss past an hour). */
export function duration(ms) {
  if (ms === null || ms === undefined) return "—";
  const total = Math.max(0, Math.floor(ms / 1000));
  const s = String(total % 60).padStart(2, "0");
  const m = Math.floor(total / 60) % 60;
  const hours = Math.floor(total / 3600);
  return hours ? `${hours}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
}

/** "in_progress" → "in progress". */
export const words = (name) => String(name ?? "").replaceAll("_", " ");

export function badge(text, kind = text) {
  return h("span", { class: `badge badge-${String(kind).replaceAll("_", "-")}` }, words(text));
}

// --- Errors in words ---------------------------------------------------------------

const SENTENCES = {
  unauthenticated: "Your session has ended: log in again.",
  forbidden: "This account is not allowed to do that.",
  not_found: "It does not exist (any more): it may have been removed.",
  conflict: "That conflicts with how things are now.",
  state_conflict:
    "Its state does not allow that any more (someone may have changed it first): reload and look again.",
  invalid_code: "That code is wrong or has expired, or this phone has no admin account.",
  rate_limited: "Too many attempts for now.",
  invalid_params: "Some of what was entered is not valid.",
  invalid_request: "The console sent a request the server does not accept: reload the page.",
  method_not_found: "This server does not know that action: is it an older version?",
  unavailable: "The server is busy or restarting: try again in a moment.",
  overloaded: "The server is busy: try again in a moment.",
  internal_error:
    "Something went wrong on the server. Try again; if it persists, tell the developers.",
  idempotency_mismatch: "That action was already sent with other details: reload and try again.",
  payment_required: "This needs a payment first.",
  unprocessable: "A rule of the marketplace refused it.",
  timeout: "The server did not answer in time: check the connection and try again.",
  disconnected:
    "The connection dropped before the server answered: look whether it was done, then try again.",
  closed: "The console is not connected: reload the page.",
  no_session: "You are not logged in.",
};

/** What went wrong, for people: a sentence per kind of error, then the server's words. */
export function describeError(error) {
  const name =
    error?.name && error.name !== "Error" && error.name !== "RpcError" ? error.name : error?.code;
  const data = error?.data ?? {};
  const parts = [
    SENTENCES[data.error] ?? SENTENCES[name] ?? SENTENCES[error?.code] ?? "It did not work.",
  ];
  if (data.retryAfterMs)
    parts.push(`Wait ${Math.ceil(data.retryAfterMs / 1000)} s before trying again.`);
  if (typeof data.attemptsLeft === "number" && data.reason === "wrong_code") {
    parts.push(
      `${data.attemptsLeft} ${data.attemptsLeft === 1 ? "try" : "tries"} left for this code.`,
    );
  }
  for (const field of data.fields ?? []) parts.push(`${field.field}: ${field.message}.`);
  const message = error?.message;
  if (message && !parts.includes(message)) parts.push(`(${message})`);
  return parts.join(" ");
}

// --- Dialogs ----------------------------------------------------------------------------
// Native modal <dialog>: the rest of the page is inert while one is open (focus stays
// inside) and Escape closes it; focus goes back where it was.

function openModal(dialog) {
  const before = document.activeElement;
  dialog.addEventListener(
    "close",
    () => {
      if (before instanceof HTMLElement && before.isConnected) before.focus();
    },
    { once: true },
  );
  dialog.showModal();
}

/**
 * Ask before doing something: the dialog says exactly what will happen. Resolves to the
 * form's values (an object) when confirmed, null when cancelled (button or Escape).
 * `fields`: extra inputs (elements) shown in the form, e.g. a refund's reason.
 */
export function confirmAction({ title, body, action, danger = false, fields = [] }) {
  const dialog = document.getElementById("confirm");
  const heading = h("h2", { id: "confirm-title" }, title);
  const cancel = h(
    "button",
    { type: "button", class: "secondary", onclick: () => dialog.close("cancel") },
    "Cancel",
  );
  const go = h("button", { type: "submit", class: danger ? "danger" : "primary" }, action);
  const form = h(
    "form",
    {},
    heading,
    ...[body].flat().map((text) => (text instanceof Node ? text : h("p", {}, text))),
    ...fields,
    h("div", { class: "buttons" }, cancel, go),
  );
  fill(dialog, form);
  dialog.setAttribute("aria-labelledby", "confirm-title");
  return new Promise((resolve) => {
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const values = Object.fromEntries(new FormData(form).entries());
      dialog.close("confirm");
      resolve(values);
    });
    dialog.addEventListener("close", () => resolve(null), { once: true });
    openModal(dialog);
    (fields.length ? form.querySelector("input, select, textarea") : cancel)?.focus();
  });
}

/** Show a piece of content (a call's trail, a payment) in the detail dialog. */
export function showDetail(title, ...content) {
  const dialog = document.getElementById("detail");
  const close = h(
    "button",
    { type: "button", class: "secondary close", onclick: () => dialog.close() },
    "Close",
  );
  fill(
    dialog,
    h("div", { class: "dialog-head" }, h("h2", { id: "detail-title" }, title), close),
    h("div", { class: "dialog-body" }, ...content),
  );
  dialog.setAttribute("aria-labelledby", "detail-title");
  if (!dialog.open) openModal(dialog);
  close.focus();
  return dialog;
}

/** Run `work` while `button` shows it is busy; errors go to `report`. */
export async function busy(button, work, report) {
  if (button) {
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
  }
  try {
    return await work();
  } catch (error) {
    report(error);
    return undefined;
  } finally {
    if (button) {
      button.disabled = false;
      button.removeAttribute("aria-busy");
    }
  }
}
