// Usage: daily cost and tokens by model and by key, the cache-hit rate, the per-request table
// with filters, and the export. Dates are picked and shown in the viewer's time zone; the API
// gets UTC instants, and daily roll-ups are UTC days.
import { api } from "../api";
import { daysBetween, type Series, stackedBars } from "../charts";
import { field, h, replace, table } from "../dom";
import { localDayStart, localDayValue, timeZone, tokens, usd, when } from "../format";
import { downloadExport } from "../export-download";
import { errorBox, messageOf } from "../notice";
import type { DailyRow } from "../../../../workers/gateway/src/dashboard/wire-types";


const keyLabel = (r: { key_id: string | null; key_name: string | null }) => r.key_name ?? (r.key_id ? r.key_id : "(no key)");

function seriesBy(rows: DailyRow[], label: (r: DailyRow) => string, value: (r: DailyRow) => number): Series[] {
  const map = new Map<string, Map<string, number>>();
  for (const r of rows) {
    const name = label(r);
    const values = map.get(name) ?? new Map<string, number>();
    values.set(r.day, (values.get(r.day) ?? 0) + value(r));
    map.set(name, values);
  }
  return [...map.entries()].map(([l, values]) => ({ label: l, values }));
}

export async function usagePage(main: HTMLElement): Promise<void> {
  const today = new Date();
  const weekAgo = new Date(today.getFullYear(), today.getMonth(), today.getDate() - 6);
  const from = h("input", { type: "date", name: "from", value: localDayValue(weekAgo), required: true });
  const to = h("input", { type: "date", name: "to", value: localDayValue(today), required: true });
  const model = h("select", { name: "model" }, h("option", { value: "" }, "All models"));
  const key = h("select", { name: "key" }, h("option", { value: "" }, "All keys"));
  const status = h("select", { name: "status" }, ["", "ok", "aborted", "failed"].map((s) => h("option", { value: s }, s || "Any status")));
  const error = errorBox();
  const summary = h("section", { class: "cards", "aria-label": "Totals" });
  const charts = h("div", { class: "charts" });
  const records = h("div");
  const more = h("button", { type: "button", class: "secondary", hidden: true }, "Load more");
  const exportFormat = h("select", { name: "format" }, h("option", { value: "csv" }, "CSV"), h("option", { value: "jsonl" }, "JSON Lines"));
  const exportGroup = h("select", { name: "group" }, h("option", { value: "request" }, "One row per request"), h("option", { value: "day" }, "By day, model and key"));
  const exportLink = h("a", { class: "button", href: "#", download: "", "data-testid": "export-link" }, "Download export");
  // A large export comes in linked parts: fetch them all, then save one file.
  exportLink.addEventListener("click", (e: Event) => {
    e.preventDefault();
    error.show(null);
    exportLink.textContent = "Preparing export…";
    downloadExport(exportLink.href, (parts) => (exportLink.textContent = `Preparing export… (part ${parts})`))
      .catch((err) => error.show(messageOf(err)))
      .finally(() => (exportLink.textContent = "Download export"));
  });

  const { data: keys } = await api<{ data: { id: string; name: string }[] }>("GET", "/keys");
  for (const k of keys) key.append(h("option", { value: k.id }, k.name));
  const { data: modelRows } = await api<{ data: { id: string }[] }>("GET", "/models").catch(() => ({ data: [] as { id: string }[] }));
  for (const m of modelRows) model.append(h("option", { value: m.id }, m.id));

  const range = () => {
    const start = localDayStart(from.value);
    const end = localDayStart(to.value) + 0; // local midnight of the last day...
    const next = new Date(end);
    next.setDate(next.getDate() + 1); // ...to the next local midnight, exclusive
    return { from: start, to: next.getTime() };
  };
  const filterQuery = () => {
    const q = new URLSearchParams({ from: String(range().from), to: String(range().to) });
    if (model.value) q.set("model", model.value);
    if (key.value) q.set("key_id", key.value);
    if (status.value) q.set("status", status.value);
    return q;
  };

  let rows: any[] = [];
  let cursor: string | null = null;
  const renderRecords = () =>
    replace(
      records,
      table(
        ["Time", "Model", "Key", "Status", "Prompt (hit / miss)", "Output", "Cost"],
        rows.map((r) => [
          when(r.completed_at),
          r.model,
          keyLabel(r),
          r.status,
          `${tokens(r.cache_hit_tokens + r.cache_miss_tokens)} (${tokens(r.cache_hit_tokens)} / ${tokens(r.cache_miss_tokens)})`,
          tokens(r.completion_tokens),
          usd(r.cost_micros),
        ]),
        "Requests",
      ),
    );
  const loadRecords = async (reset: boolean) => {
    const q = filterQuery();
    if (!reset && cursor) q.set("cursor", cursor);
    const page = await api<{ data: any[]; next_cursor: string | null }>("GET", `/usage/records?${q}`);
    rows = reset ? page.data : rows.concat(page.data);
    cursor = page.next_cursor;
    more.hidden = !cursor;
    renderRecords();
  };
  more.addEventListener("click", () => loadRecords(false).catch((err) => error.show(messageOf(err))));

  const loadCharts = async () => {
    const r = range();
    const daily = await api<{ first_day: string; last_day: string; data: DailyRow[] }>("GET", `/usage/daily?from=${r.from}&to=${r.to}`);
    const days = daysBetween(daily.first_day, daily.last_day);
    const sum = (f: (d: DailyRow) => number) => daily.data.reduce((a, d) => a + f(d), 0);
    const hit = sum((d) => d.cache_hit_tokens);
    const prompt = hit + sum((d) => d.cache_miss_tokens);
    replace(
      summary,
      h("div", { class: "card stat" }, h("span", null, "Cost"), h("strong", { "data-testid": "usage-cost" }, usd(sum((d) => d.cost_micros)))),
      h("div", { class: "card stat" }, h("span", null, "Requests"), h("strong", { "data-testid": "usage-requests" }, tokens(sum((d) => d.requests)))),
      h("div", { class: "card stat" }, h("span", null, "Tokens (prompt + output)"), h("strong", null, tokens(prompt + sum((d) => d.completion_tokens)))),
      h("div", { class: "card stat" }, h("span", null, "Cache-hit rate"), h("strong", { "data-testid": "cache-hit-rate" }, prompt ? `${((hit / prompt) * 100).toFixed(1)}%` : "—")),
    );
    const allTokens = (d: DailyRow) => d.cache_hit_tokens + d.cache_miss_tokens + d.completion_tokens;
    replace(
      charts,
      stackedBars("Daily cost by model (UTC days)", days, seriesBy(daily.data, (d) => d.model, (d) => d.cost_micros), usd),
      stackedBars("Daily tokens by model (UTC days)", days, seriesBy(daily.data, (d) => d.model, allTokens), tokens),
      stackedBars("Daily cost by key (UTC days)", days, seriesBy(daily.data, keyLabel, (d) => d.cost_micros), usd),
      stackedBars("Daily tokens by key (UTC days)", days, seriesBy(daily.data, keyLabel, allTokens), tokens),
    );
  };

  const updateExportLink = () => {
    const q = filterQuery();
    q.set("format", exportFormat.value);
    q.set("group", exportGroup.value);
    exportLink.href = `/dashboard/api/usage/export?${q}`;
  };

  const refresh = async () => {
    error.show(null);
    if (!from.value || !to.value || localDayStart(from.value) > localDayStart(to.value)) return error.show("Pick a start date on or before the end date.");
    updateExportLink();
    try {
      await Promise.all([loadCharts(), loadRecords(true)]);
    } catch (err) {
      error.show(messageOf(err));
    }
  };
  for (const control of [from, to, model, key, status]) control.addEventListener("change", refresh);
  for (const control of [exportFormat, exportGroup]) control.addEventListener("change", updateExportLink);

  main.append(
    h("h1", null, "Usage"),
    h(
      "form",
      { class: "card filters", "aria-label": "Filters", onsubmit: (e: Event) => (e.preventDefault(), void refresh()) },
      field("From", from),
      field("To", to),
      field("Model", model),
      field("Key", key),
      field("Status", status),
      h("button", { type: "submit" }, "Apply"),
      h("small", { class: "muted tz" }, `Dates and times in ${timeZone()}.`),
    ),
    error,
    summary,
    charts,
    h("h2", null, "Requests"),
    records,
    more,
    h(
      "section",
      { class: "card export", "aria-labelledby": "export-title" },
      h("h2", { id: "export-title" }, "Export"),
      h("p", { class: "muted" }, "Exports the date range above (and, per request, the filters). Large ranges stream as they download."),
      h("div", { class: "inline-form" }, field("Format", exportFormat), field("Rows", exportGroup), exportLink),
    ),
  );
  await refresh();
}
