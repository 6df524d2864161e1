// Status messages announced to screen readers; errors use role=alert.
import { h } from "./dom";

export function errorBox(): HTMLElement & { show(message: string | null): void } {
  const box = h("p", { class: "error", role: "alert", hidden: true }) as unknown as HTMLElement & { show(message: string | null): void };
  box.show = (message) => {
    box.textContent = message ?? "";
    box.hidden = !message;
  };
  return box;
}

export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

// A confirmation dialog (native <dialog>: focus is trapped and Escape cancels).
export function confirmDialog(title: string, text: string, confirmLabel: string): Promise<boolean> {
  return new Promise((resolve) => {
    const dialog = h(
      "dialog",
      { class: "dialog", "aria-labelledby": "confirm-title" },
      h("h2", { id: "confirm-title" }, title),
      h("p", null, text),
      h(
        "div",
        { class: "actions" },
        h("button", { type: "button", class: "secondary", onclick: () => dialog.close("cancel") }, "Cancel"),
        h("button", { type: "button", class: "danger", onclick: () => dialog.close("confirm") }, confirmLabel),
      ),
    );
    dialog.addEventListener("close", () => {
      dialog.remove();
      resolve(dialog.returnValue === "confirm");
    });
    document.body.appendChild(dialog);
    dialog.showModal();
  });
}

// A form's submit handler: the button is disabled while `action` runs, so a double click sends
// one request; a failure is shown in `error`.
export function submitting(error: ReturnType<typeof errorBox>, submit: HTMLButtonElement, action: () => Promise<void>) {
  return async (event: Event) => {
    event.preventDefault();
    error.show(null);
    submit.disabled = true;
    try {
      await action();
    } catch (err) {
      error.show(messageOf(err));
    } finally {
      submit.disabled = false;
    }
  };
}
