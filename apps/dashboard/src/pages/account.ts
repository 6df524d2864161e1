// The signed-in person: sign out here, or everywhere (ends every session of this user).
import { api, currentSession, setSession } from "../api";
import { h } from "../dom";
import { confirmDialog, errorBox, messageOf } from "../notice";
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
  );
}
