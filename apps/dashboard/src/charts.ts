// Stacked daily bar charts in SVG. Each bar has a <title> (hover) and the chart carries a
// text summary for screen readers; the numbers are also in the tables below the charts.
import { h, svg } from "./dom";

export interface Series {
  label: string;
  values: Map<string, number>; // day -> value
}

const COLORS = ["#3b6ef5", "#e8833a", "#2aa876", "#b04fd6", "#d64f6f", "#8a8f2c", "#2c8a8a", "#7a5c3a"];

export function stackedBars(title: string, days: string[], series: Series[], format: (n: number) => string): HTMLElement {
  const width = 640;
  const height = 220;
  const pad = { left: 8, right: 8, top: 10, bottom: 24 };
  const totals = days.map((d) => series.reduce((sum, s) => sum + (s.values.get(d) ?? 0), 0));
  const max = Math.max(1, ...totals);
  const slot = (width - pad.left - pad.right) / Math.max(1, days.length);
  const barWidth = Math.max(2, slot * 0.7);
  const scale = (height - pad.top - pad.bottom) / max;

  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": `${title}: total ${format(totals.reduce((a, b) => a + b, 0))}`, class: "chart" });
  days.forEach((day, i) => {
    let y = height - pad.bottom;
    const x = pad.left + i * slot + (slot - barWidth) / 2;
    series.forEach((s, si) => {
      const value = s.values.get(day) ?? 0;
      if (value <= 0) return;
      const barHeight = Math.max(1, value * scale);
      y -= barHeight;
      chart.appendChild(
        svg("rect", { x, y, width: barWidth, height: barHeight, fill: COLORS[si % COLORS.length]! }, svg("title", {}, `${day} · ${s.label}: ${format(value)}`)),
      );
    });
    if (days.length <= 14 || i % Math.ceil(days.length / 10) === 0) {
      chart.appendChild(svg("text", { x: x + barWidth / 2, y: height - 6, "text-anchor": "middle", class: "axis" }, day.slice(5)));
    }
  });
  chart.appendChild(svg("line", { x1: pad.left, x2: width - pad.right, y1: height - pad.bottom, y2: height - pad.bottom, class: "baseline" }));

  const legend = h(
    "ul",
    { class: "legend" },
    series.map((s, si) => {
      const swatch = h("span", { class: "swatch", "aria-hidden": "true" });
      swatch.style.background = COLORS[si % COLORS.length]!;
      return h("li", null, swatch, s.label);
    }),
  );
  return h("figure", { class: "card chart-card" }, h("figcaption", null, title), chart, legend);
}

// Every UTC day from first to last, inclusive.
export function daysBetween(first: string, last: string): string[] {
  const out: string[] = [];
  for (let t = Date.parse(`${first}T00:00:00Z`); t <= Date.parse(`${last}T00:00:00Z`); t += 86_400_000) out.push(new Date(t).toISOString().slice(0, 10));
  return out;
}
