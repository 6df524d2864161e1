// Sign in and sign up.
import { api, setSession } from "../api";
import { field, h } from "../dom";
import { errorBox, messageOf, submitting } from "../notice";
import { href, navigate } from "../router";
import { humanCheck, type HumanCheck } from "../turnstile";

function credentialsForm(kind: "signin" | "signup"): HTMLElement {
  const email = h("input", { type: "email", name: "email", autocomplete: "email", required: true });
  const password = h("input", {
    type: "password",
    name: "password",
    autocomplete: kind === "signup" ? "new-password" : "current-password",
    required: true,
    minlength: kind === "signup" ? "10" : undefined,
  });
  const error = errorBox();
  const submit = h("button", { type: "submit" }, kind === "signup" ? "Create account" : "Sign in");
  let check: HumanCheck | null = null;
  if (kind === "signup") {
    humanCheck((message) => error.show(message))
      .then((found) => {
        check = found;
        if (found) error.before(found.element);
      })
      .catch((err) => error.show(messageOf(err)));
  }
  const form = h(
    "form",
    {
      class: "card narrow",
      onsubmit: submitting(error, submit, async () => {
        const res = await api("POST", `/auth/${kind}`, { email: email.value, password: password.value, turnstile_token: check?.token() });
        setSession({ email: res.user.email, role: res.user.role, csrf: res.csrf_token });
        navigate("/usage");
      }),
    },
    h("h1", null, kind === "signup" ? "Create your account" : "Sign in"),
    field("Email", email),
    field("Password", password, kind === "signup" ? "At least 10 characters." : undefined),
    error,
    submit,
    kind === "signup"
      ? h("p", null, "Already have an account? ", h("a", { href: href("/signin"), "data-link": true }, "Sign in"))
      : h("p", null, "New here? ", h("a", { href: href("/signup"), "data-link": true }, "Create an account")),
  );
  return form;
}

export function signInPage(main: HTMLElement): void {
  main.append(credentialsForm("signin"));
  main.querySelector("input")?.focus();
}

export function signUpPage(main: HTMLElement): void {
  main.append(credentialsForm("signup"));
  main.querySelector("input")?.focus();
}
