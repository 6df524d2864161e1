// Operator: GPU workers (url, models, enabled). Secrets can be set, never read back.
import { api } from "../api";
import { field, h, replace, table } from "../dom";
import { when } from "../format";
import { confirmDialog, errorBox, messageOf, submitting } from "../notice";

export async function adminWorkersPage(main: HTMLElement): Promise<void> {
  const list = h("div");
  const error = errorBox();
  const id = h("input", { type: "text", pattern: "[A-Za-z0-9_.\\-]{1,64}", placeholder: "optional" });
  const url = h("input", { type: "url", required: true, placeholder: "https://gpu-1.example.com" });
  const secret = h("input", { type: "password", required: true, minlength: "8", autocomplete: "off" });
  const models = h("input", { type: "text", required: true, value: "deepseek-chat, deepseek-reasoner" });
  const addSubmit = h("button", { type: "submit" }, "Add worker");
  const modelList = (text: string) => text.split(",").map((m) => m.trim()).filter(Boolean);

  const refresh = async () => {
    const { data } = await api<{ data: any[] }>("GET", "/admin/workers");
    replace(
      list,
      table(
        ["Id", "URL", "Models", "Secret", "Added", "Enabled", ""],
        data.map((w) => [
          h("code", null, w.id),
          w.url,
          (w.models as string[]).join(", "),
          h("code", null, w.secret_hint),
          when(w.created_at),
          h("input", {
            type: "checkbox",
            checked: w.enabled,
            "aria-label": `Worker ${w.id} enabled`,
            onchange: async (e: Event) => {
              try {
                await api("PATCH", `/admin/workers/${encodeURIComponent(w.id)}`, { enabled: (e.target as HTMLInputElement).checked });
              } catch (err) {
                error.show(messageOf(err));
              }
            },
          }),
          h(
            "div",
            { class: "actions" },
            h(
              "button",
              {
                type: "button",
                class: "small secondary",
                onclick: async () => {
                  const next = prompt(`New secret for ${w.id} (at least 8 characters)`);
                  if (!next) return;
                  await api("PATCH", `/admin/workers/${encodeURIComponent(w.id)}`, { secret: next }).catch((err) => error.show(messageOf(err)));
                  await refresh();
                },
              },
              "Rotate secret",
            ),
            h(
              "button",
              {
                type: "button",
                class: "small danger",
                onclick: async () => {
                  if (!(await confirmDialog("Remove this worker?", `${w.id} (${w.url}) will get no more requests.`, "Remove"))) return;
                  await api("DELETE", `/admin/workers/${encodeURIComponent(w.id)}`).catch((err) => error.show(messageOf(err)));
                  await refresh();
                },
              },
              "Remove",
            ),
          ),
        ]),
        "GPU workers",
      ),
    );
  };

  main.append(
    h("h1", null, "GPU workers"),
    h(
      "form",
      {
        class: "card inline-form",
        onsubmit: submitting(error, addSubmit, async () => {
          await api("POST", "/admin/workers", { id: id.value || undefined, url: url.value, secret: secret.value, models: modelList(models.value) });
          id.value = url.value = secret.value = "";
          await refresh();
        }),
      },
      field("Id", id),
      field("URL", url),
      h("p", { class: "muted" }, "Deployed gateways reach workers by https:// hostname only (e.g. through Cloudflare Tunnel); http:// and IP addresses work in local development."),
      field("Secret", secret),
      field("Models (comma-separated)", models),
      addSubmit,
    ),
    error,
    list,
  );
  await refresh();
}
