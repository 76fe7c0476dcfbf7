// The overview's chart: bookings, calls and revenue per day over the last 30 days, as
// three bar panels over one day axis (each series its own scale), drawn as inline SVG
// by hand. Every bar has a tooltip (<title>); the same figures are in a table next to
// the chart for screen readers and copying.

import { dayLabel, money, number } from "./ui.js";

const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 960;
const PANEL = 92; // height of one panel's bars
const GAP = 30; // room for a panel's title
const LEFT = 8;
const RIGHT = 8;

function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) el.setAttribute(name, String(value));
  for (const child of children)
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return el;
}

export const SERIES = [
  { key: "bookings", title: "Bookings made", format: number, className: "bookings" },
  { key: "calls", title: "Calls started", format: number, className: "calls" },
  { key: "revenuePaise", title: "Revenue received", format: money, className: "revenue" },
];

/** An <svg> of `days` (admin.stats' activityPerDay, oldest first). */
export function activityChart(days) {
  const height = SERIES.length * (PANEL + GAP) + 24;
  const svg = s("svg", {
    viewBox: `0 0 ${WIDTH} ${height}`,
    class: "chart",
    role: "img",
    "aria-labelledby": "chart-title chart-summary",
  });
  const totals = SERIES.map((series) =>
    series.format(days.reduce((sum, d) => sum + d[series.key], 0)),
  );
  svg.append(
    s(
      "title",
      { id: "chart-title" },
      `Bookings, calls and revenue per day, last ${days.length} days`,
    ),
    s(
      "desc",
      { id: "chart-summary" },
      SERIES.map((series, i) => `${series.title}: ${totals[i]} in total`).join("; "),
    ),
  );
  const step = (WIDTH - LEFT - RIGHT) / Math.max(days.length, 1);
  const bar = Math.max(2, step * 0.72);
  SERIES.forEach((series, index) => {
    const top = index * (PANEL + GAP) + GAP;
    const max = Math.max(...days.map((d) => d[series.key]), 0);
    const panel = s("g", { class: `panel ${series.className}` });
    panel.append(
      s(
        "text",
        { x: LEFT, y: top - 10, class: "panel-title" },
        `${series.title} — highest ${series.format(max)} a day, ${totals[index]} in all`,
      ),
      s("line", { x1: LEFT, x2: WIDTH - RIGHT, y1: top + PANEL, y2: top + PANEL, class: "axis" }),
    );
    days.forEach((day, i) => {
      const value = day[series.key];
      const h = max ? Math.max(value ? 1.5 : 0, (value / max) * PANEL) : 0;
      const x = LEFT + i * step + (step - bar) / 2;
      panel.append(
        s(
          "rect",
          {
            x: x.toFixed(1),
            y: (top + PANEL - h).toFixed(1),
            width: bar.toFixed(1),
            height: h.toFixed(1),
            class: "bar",
          },
          s("title", {}, `${dayLabel(day.day)}: ${series.format(value)}`),
        ),
      );
    });
    svg.append(panel);
  });
  // Day labels under the last panel: the first day, every 7th day, and today.
  const base = SERIES.length * (PANEL + GAP) + 14;
  days.forEach((day, i) => {
    const last = i === days.length - 1;
    if (!last && (i % 7 !== 0 || days.length - 1 - i < 4)) return; // no label over another
    const x = LEFT + i * step + step / 2;
    const anchor = i === 0 ? "start" : i === days.length - 1 ? "end" : "middle";
    const at = i === 0 ? LEFT : i === days.length - 1 ? WIDTH - RIGHT : x;
    svg.append(
      s(
        "text",
        { x: at.toFixed(1), y: base, class: "day", "text-anchor": anchor },
        dayLabel(day.day),
      ),
    );
  });
  return svg;
}
