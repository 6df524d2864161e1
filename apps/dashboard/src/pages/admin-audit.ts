// Operator: the audit log, newest first: who changed what and when (dashboard admins by email,
// the operator CLI as cli:<OS user>), with each change's parameters.
import { api } from "../api";
import { h, replace, table } from "../dom";
import { when } from "../format";
import { errorBox, messageOf } from "../notice";

interface AuditEntry {
  id: number;
  actor: string;
  action: string;
  target: string | null;
  details: unknown;
  created_at: number;
}

export async function adminAuditPage(main: HTMLElement): Promise<void> {
  const error = errorBox();
  const list = h("div", { "data-testid": "audit-log" });
  const more = h("button", { type: "button", class: "secondary", hidden: true }, "Older entries");
  const entries: AuditEntry[] = [];
  let before: number | null = null;
  const load = async () => {
    const page = await api<{ data: AuditEntry[]; next_before: number | null }>("GET", `/admin/audit${before ? `?before=${before}` : ""}`);
    entries.push(...page.data);
    before = page.next_before;
    more.hidden = before === null;
    replace(
      list,
      table(
        ["When", "Who", "Action", "Target", "Details"],
        entries.map((e) => [when(e.created_at), e.actor, h("code", null, e.action), e.target ? h("code", null, e.target) : "—", h("code", { class: "details" }, JSON.stringify(e.details))]),
        "Audit log",
      ),
    );
  };
  more.addEventListener("click", () => load().catch((err) => error.show(messageOf(err))));
  main.append(h("h1", null, "Audit log"), h("p", { class: "muted" }, "Changes made by operators, in the dashboard and with the operator CLI."), error, list, more);
  await load().catch((err) => error.show(messageOf(err)));
}
