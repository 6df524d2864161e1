// Balance: granted and topped-up amounts, the credits behind them, and recent charges.
import { api } from "../api";
import { h, table } from "../dom";
import { usd, when } from "../format";

export async function billingPage(main: HTMLElement): Promise<void> {
  const data = await api<any>("GET", "/balance");
  main.append(
    h("h1", null, "Billing"),
    h(
      "section",
      { class: "cards", "aria-label": "Balances" },
      data.balances.flatMap((b: any) => [
        h("div", { class: "card stat" }, h("span", null, `Total (${b.currency})`), h("strong", { "data-testid": "balance-total" }, usd(b.total_micros))),
        h("div", { class: "card stat" }, h("span", null, "Granted"), h("strong", { "data-testid": "balance-granted" }, usd(b.granted_micros))),
        h("div", { class: "card stat" }, h("span", null, "Topped up"), h("strong", { "data-testid": "balance-topped-up" }, usd(b.topped_up_micros))),
      ]),
    ),
    h("p", { class: "muted" }, "Charges use the granted balance first. Top-ups arrive from the payment provider; operators can also grant credit."),
    h("h2", null, "Recent charges"),
    table(
      ["Time", "Model", "Key", "Status", "Tier", "Cost"],
      data.charges.map((c: any) => [when(c.completed_at), c.model, c.key_name ?? "—", c.status, c.price_tier, usd(c.cost_micros)]),
      "Recent charges",
    ),
    h("h2", null, "Credits"),
    table(
      ["Time", "Kind", "Amount", "Expires", "Note"],
      data.credits.map((c: any) => [when(c.created_at), c.kind === "granted" ? "grant" : "top-up", usd(c.amount_micros), c.expires_at ? when(c.expires_at) : "—", c.note ?? ""]),
      "Credits",
    ),
  );
}
