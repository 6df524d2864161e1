// The signed-in person: change the password (ends every other session), sign out here, or
// everywhere (ends every session of this user).
import { api, currentSession, setSession } from "../api";
import { field, h } from "../dom";
import { confirmDialog, errorBox, messageOf, submitting } from "../notice";
import { navigate } from "../router";

export function accountPage(main: HTMLElement): void {
  const session = currentSession()!;
  const error = errorBox();
  const signOut = async (everywhere: boolean) => {
    if (everywhere && !(await confirmDialog("Sign out everywhere?", "Every browser signed in to this account will be signed out.", "Sign out everywhere"))) return;
    try {
      await api("POST", everywhere ? "/auth/signout-everywhere" : "/auth/signout", {});
      setSession(null);
      navigate("/signin");
    } catch (err) {
      error.show(messageOf(err));
    }
  };
  const current = h("input", { type: "password", name: "current-password", autocomplete: "current-password", required: true });
  const next = h("input", { type: "password", name: "new-password", autocomplete: "new-password", required: true, minlength: "10" });
  const passwordError = errorBox();
  const passwordStatus = h("p", { role: "status", class: "muted" });
  const passwordSubmit = h("button", { type: "submit" }, "Change password");
  const changePassword = submitting(passwordError, passwordSubmit, async () => {
    passwordStatus.textContent = "";
    const res = await api<{ csrf_token: string }>("POST", "/auth/password", { current_password: current.value, new_password: next.value });
    setSession({ ...session, csrf: res.csrf_token });
    current.value = next.value = "";
    passwordStatus.textContent = "Password changed. Other browsers were signed out.";
  });
  main.append(
    h("h1", null, "Account"),
    h(
      "section",
      { class: "card" },
      h("dl", null, h("dt", null, "Email"), h("dd", null, session.email), h("dt", null, "Role"), h("dd", null, session.role)),
      error,
      h(
        "div",
        { class: "actions" },
        h("button", { type: "button", class: "secondary", onclick: () => signOut(false) }, "Sign out"),
        h("button", { type: "button", class: "danger", onclick: () => signOut(true) }, "Sign out everywhere"),
      ),
    ),
    h(
      "form",
      { class: "card", "aria-label": "Change password", onsubmit: changePassword },
      h("h2", null, "Change password"),
      field("Current password", current),
      field("New password", next, "At least 10 characters. Every other browser signed in to this account will be signed out."),
      passwordError,
      passwordStatus,
      passwordSubmit,
    ),
  );
}
