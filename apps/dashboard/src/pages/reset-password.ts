// Setting a new password with a one-time reset link from the operator
// (`npm run admin -- reset-password --email ...`).
import { api } from "../api";
import { field, h } from "../dom";
import { errorBox, submitting } from "../notice";
import { href, navigate } from "../router";

export function resetPasswordPage(main: HTMLElement, params: URLSearchParams): void {
  const token = params.get("token") ?? "";
  const password = h("input", { type: "password", name: "new-password", autocomplete: "new-password", required: true, minlength: "10" });
  const error = errorBox();
  const submit = h("button", { type: "submit" }, "Set new password");
  const form = h(
    "form",
    {
      class: "card narrow",
      onsubmit: submitting(error, submit, async () => {
        await api("POST", "/auth/password-reset", { token, new_password: password.value });
        navigate("/signin");
      }),
    },
    h("h1", null, "Choose a new password"),
    token ? null : h("p", { class: "error", role: "alert" }, "This page needs the link your operator gave you."),
    field("New password", password, "At least 10 characters. Every browser signed in to this account will be signed out."),
    error,
    submit,
    h("p", null, h("a", { href: href("/signin"), "data-link": true }, "Back to sign in")),
  );
  main.append(form);
  password.focus();
}
