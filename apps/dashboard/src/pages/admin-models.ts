// Operator: prices per model, in USD per 1M tokens (stored as integer micro-USD).
import { api } from "../api";
import { h, replace, table } from "../dom";
import { parseUsd, usd } from "../format";
import { errorBox, messageOf } from "../notice";

export async function adminModelsPage(main: HTMLElement): Promise<void> {
  const list = h("div");
  const error = errorBox();
  const refresh = async () => {
    const { data } = await api<{ data: any[] }>("GET", "/admin/models");
    replace(
      list,
      table(
        ["Model", "Cache hit / 1M", "Cache miss / 1M", "Output / 1M", "Off-peak discount %", "Enabled", ""],
        data.map((m) => {
          const price = (label: string, micros: number) =>
            h("input", { type: "text", inputmode: "decimal", value: usd(micros).slice(1).replace(/,/g, ""), "aria-label": `${m.id} ${label} (USD per 1M tokens)`, class: "price" });
          const hit = price("cache hit price", m.cache_hit_price);
          const miss = price("cache miss price", m.cache_miss_price);
          const out = price("output price", m.output_price);
          const discount = h("input", { type: "number", min: "0", max: "100", step: "1", value: m.off_peak_discount_percent, "aria-label": `${m.id} off-peak discount`, class: "limit" });
          const enabled = h("input", { type: "checkbox", checked: !!m.enabled, "aria-label": `${m.id} enabled` });
          const status = h("span", { role: "status", class: "muted" });
          const save = async () => {
            const prices = [hit, miss, out].map((i) => parseUsd(i.value));
            if (prices.some((p) => p === null)) return void (status.textContent = "Prices are plain decimals, like 0.27");
            try {
              await api("PATCH", `/admin/models/${encodeURIComponent(m.id)}`, {
                cache_hit_price: prices[0],
                cache_miss_price: prices[1],
                output_price: prices[2],
                off_peak_discount_percent: Number(discount.value),
                enabled: enabled.checked,
              });
              status.textContent = "Saved.";
            } catch (err) {
              status.textContent = messageOf(err);
            }
          };
          return [h("code", null, m.id), hit, miss, out, discount, enabled, h("div", null, h("button", { type: "button", class: "small", onclick: save }, "Save"), status)];
        }),
        "Prices",
      ),
    );
  };
  main.append(h("h1", null, "Prices"), h("p", { class: "muted" }, "USD per one million tokens. Changes apply to requests settled from now on."), error, list);
  await refresh().catch((err) => error.show(messageOf(err)));
}
