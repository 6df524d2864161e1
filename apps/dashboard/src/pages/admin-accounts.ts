// Operator: find accounts, see balances, grant credit, set account and key rate limits.
import { api } from "../api";
import { field, h, replace, table } from "../dom";
import { usd, when } from "../format";
import { errorBox, messageOf } from "../notice";

const limitInput = (label: string, value: number | null) =>
  h("input", { type: "number", min: "0", step: "1", value: value ?? "", placeholder: "default", "aria-label": label, class: "limit" });
const limitValue = (input: HTMLInputElement) => (input.value.trim() === "" ? null : Number(input.value));

function limitsForm(what: string, current: any, save: (limits: object) => Promise<unknown>): HTMLElement {
  const rpm = limitInput(`${what} requests per minute`, current.rpm_limit);
  const tpm = limitInput(`${what} tokens per minute`, current.tpm_limit);
  const conc = limitInput(`${what} concurrent requests`, current.concurrency_limit);
  const status = h("span", { role: "status", class: "muted" });
  return h(
    "form",
    {
      class: "limits",
      onsubmit: async (e: Event) => {
        e.preventDefault();
        try {
          await save({ rpm_limit: limitValue(rpm), tpm_limit: limitValue(tpm), concurrency_limit: limitValue(conc) });
          status.textContent = "Saved.";
        } catch (err) {
          status.textContent = messageOf(err);
        }
      },
    },
    h("label", null, "RPM ", rpm),
    h("label", null, "TPM ", tpm),
    h("label", null, "Concurrency ", conc),
    h("button", { type: "submit", class: "small" }, "Save limits"),
    status,
  );
}

function accountDetail(account: any, refresh: () => Promise<void>): HTMLElement {
  const kind = h("select", null, h("option", { value: "granted" }, "Grant (promotional)"), h("option", { value: "topped_up" }, "Top-up (paid)"));
  const amount = h("input", { type: "text", inputmode: "decimal", required: true, placeholder: "10.00" });
  const note = h("input", { type: "text", maxlength: "200" });
  const error = errorBox();
  const keys = h("div");
  const detail = h(
    "section",
    { class: "card", "aria-label": `Account ${account.id}` },
    h("h3", null, account.owner_email ?? account.name, " ", h("code", null, account.id)),
    h("h4", null, "Account limits"),
    limitsForm("Account", account, (l) => api("PUT", `/admin/accounts/${encodeURIComponent(account.id)}/limits`, l)),
    h("h4", null, "Grant credit"),
    h(
      "form",
      {
        class: "inline-form",
        onsubmit: async (e: Event) => {
          e.preventDefault();
          error.show(null);
          try {
            await api("POST", `/admin/accounts/${encodeURIComponent(account.id)}/grants`, { kind: kind.value, amount: amount.value, note: note.value || undefined });
            await refresh();
          } catch (err) {
            error.show(messageOf(err));
          }
        },
      },
      field("Kind", kind),
      field("Amount (USD)", amount),
      field("Note", note),
      h("button", { type: "submit" }, "Add credit"),
    ),
    error,
    h("h4", null, "Keys"),
    keys,
  );
  api<{ data: any[] }>("GET", `/admin/accounts/${encodeURIComponent(account.id)}/keys`).then(({ data }) =>
    replace(
      keys,
      table(
        ["Name", "Key", "Last used", "Status", "Limits"],
        data.map((k) => [
          k.name,
          h("code", null, `${k.display_prefix}…${k.last4}`),
          when(k.last_used_at),
          k.revoked_at ? "revoked" : "active",
          limitsForm(`Key ${k.name}`, k, (l) => api("PUT", `/admin/keys/${encodeURIComponent(k.id)}/limits`, l)),
        ]),
        "Keys of the account",
      ),
    ),
  );
  return detail;
}

export async function adminAccountsPage(main: HTMLElement): Promise<void> {
  const q = h("input", { type: "search", name: "q", placeholder: "email, name or account id" });
  const list = h("div");
  const detail = h("div");
  const error = errorBox();
  const search = async () => {
    error.show(null);
    try {
      const { data } = await api<{ data: any[] }>("GET", `/admin/accounts?q=${encodeURIComponent(q.value)}`);
      const show = (account: any) => replace(detail, accountDetail(account, search));
      replace(
        list,
        table(
          ["Account", "Owner", "Balance", "Limits (RPM / TPM / conc.)", "Created", ""],
          data.map((a) => [
            h("code", null, a.id),
            a.owner_email ?? "—",
            a.balances.map((b: any) => `${usd(b.grantedMicros + b.toppedUpMicros)} (${usd(b.grantedMicros)} granted)`).join(", ") || usd(0),
            `${a.rpm_limit ?? "default"} / ${a.tpm_limit ?? "default"} / ${a.concurrency_limit ?? "default"}`,
            when(a.created_at),
            h("button", { type: "button", class: "small secondary", onclick: () => show(a) }, "Manage"),
          ]),
          "Accounts",
        ),
      );
    } catch (err) {
      error.show(messageOf(err));
    }
  };
  main.append(
    h("h1", null, "Accounts"),
    h("form", { class: "card inline-form", role: "search", onsubmit: (e: Event) => (e.preventDefault(), void search()) }, field("Search accounts", q), h("button", { type: "submit" }, "Search")),
    error,
    list,
    detail,
  );
  await search();
}
