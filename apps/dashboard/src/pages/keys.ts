// API keys: create (shown once, with a copy button), list, revoke with confirmation.
import { api } from "../api";
import { field, h, replace, table } from "../dom";
import { when } from "../format";
import { confirmDialog, errorBox, messageOf, submitting } from "../notice";
import type { KeyRow } from "../../../../workers/gateway/src/dashboard/wire-types";

function newKeyPanel(name: string, key: string, onDone: () => void): HTMLElement {
  const input = h("input", { type: "text", readonly: true, value: key, class: "mono", "aria-label": "New API key", "data-testid": "new-key" });
  const status = h("span", { role: "status", class: "muted" });
  const panel = h(
    "section",
    { class: "card highlight", "aria-labelledby": "new-key-title" },
    h("h2", { id: "new-key-title" }, `Key “${name}” created`),
    h("p", null, "Copy it now: this is the only time it is shown. Store it somewhere safe."),
    h(
      "div",
      { class: "copy-row" },
      input,
      h(
        "button",
        {
          type: "button",
          onclick: async () => {
            input.select();
            try {
              await navigator.clipboard.writeText(key);
              status.textContent = "Copied.";
            } catch {
              status.textContent = "Press Ctrl+C (⌘C) to copy the selected key.";
            }
          },
        },
        "Copy",
      ),
      status,
    ),
    h("button", { type: "button", class: "secondary", onclick: onDone }, "Done, I have saved it"),
  );
  queueMicrotask(() => input.focus());
  return panel;
}

export async function keysPage(main: HTMLElement): Promise<void> {
  const error = errorBox();
  const created = h("div");
  const list = h("div");
  const name = h("input", { type: "text", name: "name", maxlength: "64", required: true, placeholder: "e.g. laptop, CI" });
  const createSubmit = h("button", { type: "submit" }, "Create key");

  const refresh = async () => {
    const { data } = await api<{ data: KeyRow[] }>("GET", "/keys");
    replace(
      list,
      table(
        ["Name", "Key", "Created", "Last used", "Status", ""],
        data.map((k) => [
          h("span", { class: "key-name" }, k.name),
          h("code", null, `${k.display_prefix}…${k.last4}`),
          when(k.created_at),
          when(k.last_used_at),
          k.revoked_at ? h("span", { class: "badge off" }, `revoked ${when(k.revoked_at)}`) : h("span", { class: "badge on" }, "active"),
          k.revoked_at
            ? ""
            : h(
                "button",
                {
                  type: "button",
                  class: "danger small",
                  "aria-label": `Revoke key ${k.name}`,
                  onclick: async () => {
                    const ok = await confirmDialog(
                      "Revoke this key?",
                      `Requests made with “${k.name}” (${k.display_prefix}…${k.last4}) will be refused from now on. This cannot be undone.`,
                      "Revoke key",
                    );
                    if (!ok) return;
                    try {
                      await api("POST", `/keys/${encodeURIComponent(k.id)}/revoke`, {});
                      await refresh();
                    } catch (err) {
                      error.show(messageOf(err));
                    }
                  },
                },
                "Revoke",
              ),
        ]),
        "Your API keys",
      ),
    );
  };

  main.append(
    h("h1", null, "API keys"),
    h(
      "form",
      {
        class: "card inline-form",
        onsubmit: submitting(error, createSubmit, async () => {
          const key = await api<KeyRow & { key: string }>("POST", "/keys", { name: name.value });
          name.value = "";
          replace(created, newKeyPanel(key.name, key.key, () => replace(created)));
          await refresh();
        }),
      },
      field("Name of the new key", name),
      createSubmit,
    ),
    error,
    created,
    list,
  );
  await refresh();
}
