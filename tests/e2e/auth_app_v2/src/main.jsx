// A sign-in page written for Convex Auth 2.x: @convex-dev/auth/react, the username-password
// and Google methods' hooks and convex/react, unchanged. ("google" is served by the test's
// OpenID Connect provider: the hook only knows the function names.)
import { ConvexAuthProvider, useAuthActions } from "@convex-dev/auth/react";
import { useOauth, useSignInWithGoogle } from "@convex-dev/auth/methods/google/react";
import { useSignInWithUsernamePasskey } from "@convex-dev/auth/methods/username-passkey/react";
import {
  useCompletePasswordRecovery,
  useCompleteSignUpWithEmailPassword,
  useSignInWithEmailPassword,
  useCompleteChangeEmail,
  useSignUpWithEmailPassword,
  useStartChangeEmail,
  useStartPasswordRecovery,
} from "@convex-dev/auth/methods/email-password/react";
import {
  useSignInWithUsernamePassword,
  useSignUpWithUsernamePassword,
} from "@convex-dev/auth/methods/username-password/react";
import {
  Authenticated,
  AuthLoading,
  ConvexReactClient,
  Unauthenticated,
  useQuery,
} from "convex/react";
import { anyApi } from "convex/server";
import React, { useState } from "react";
import { createRoot } from "react-dom/client";

// The page is served by the deployment's HTTP actions under /http/ on the API port.
const convex = new ConvexReactClient(window.location.origin);
const api = anyApi;

function PasswordForm() {
  const { signIn } = useSignInWithUsernamePassword(api.auth);
  const { signUp } = useSignUpWithUsernamePassword(api.auth);
  const [flow, setFlow] = useState("signIn");
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const submit = async (event) => {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    const credentials = { username: form.get("email"), password: form.get("password") };
    setError(null);
    setBusy(true);
    const result = await (flow === "signIn" ? signIn : signUp)(credentials);
    setBusy(false);
    if (result.status === "error") setError(result.userError.error);
  };
  return (
    <form id="password-form" onSubmit={submit}>
      <h1 id="flow">{flow === "signIn" ? "Sign in" : "Sign up"}</h1>
      <input id="email" name="email" placeholder="Username" />
      <input id="password" name="password" type="password" placeholder="Password" />
      <button id="submit" type="submit" disabled={busy}>
        {flow === "signIn" ? "Sign in" : "Sign up"}
      </button>
      <button
        id="toggle"
        type="button"
        onClick={() => setFlow(flow === "signIn" ? "signUp" : "signIn")}
      >
        {flow === "signIn" ? "I need an account" : "I have an account"}
      </button>
      {error !== null && <p id="error">{error}</p>}
    </form>
  );
}

function GoogleButton() {
  const { signIn } = useSignInWithGoogle(api.auth);
  const { flowError } = useOauth();
  const [error, setError] = useState(null);
  const start = async () => {
    const result = await signIn();
    if (result.status === "error") setError(result.userError.error);
  };
  const shown = error ?? flowError?.error ?? null;
  return (
    <div>
      <button id="oauth" type="button" onClick={() => void start()}>
        Sign in with Google
      </button>
      {shown !== null && <p id="oauth-error">{shown}</p>}
    </div>
  );
}

// The email + password method: sign-up mails a link to ?page=validate-email&code=...,
// recovery one to ?page=reset-password&code=..., an email change one to
// ?page=confirm-email-change&code=... (the landing pages below).
function EmailPasswordForm() {
  const { signUp } = useSignUpWithEmailPassword(api.auth);
  const { signIn } = useSignInWithEmailPassword(api.auth);
  const { startPasswordRecovery } = useStartPasswordRecovery(api.auth);
  const [message, setMessage] = useState(null);
  const run = (action) => async (event) => {
    event.preventDefault();
    const form = new FormData(event.currentTarget.form);
    const email = form.get("ep-email");
    const password = form.get("ep-password");
    const result =
      action === "signUp"
        ? await signUp({ email, password })
        : action === "signIn"
          ? await signIn({ email, password })
          : await startPasswordRecovery({ email });
    if (result.success === false || result.status === "error") {
      setMessage(`error: ${result.userError.error}`);
    } else if (action !== "signIn") {
      setMessage(`sent: ${action}`);
    }
  };
  return (
    <form id="ep-form">
      <input id="ep-email" name="ep-email" placeholder="Email" />
      <input id="ep-password" name="ep-password" type="password" placeholder="Password" />
      <button id="ep-signup" type="submit" onClick={run("signUp")}>
        Sign up with email
      </button>
      <button id="ep-signin" type="button" onClick={run("signIn")}>
        Sign in with email
      </button>
      <button id="ep-recover" type="button" onClick={run("recover")}>
        Forgot password
      </button>
      {message !== null && <p id="ep-message">{message}</p>}
    </form>
  );
}

function PasskeyForm() {
  const { signIn, pending } = useSignInWithUsernamePasskey(api.auth);
  const [message, setMessage] = useState(null);
  const submit = async (event) => {
    event.preventDefault();
    const username = new FormData(event.currentTarget).get("pk-username");
    const result = await signIn({ username });
    setMessage(result.status === "error" ? `error: ${result.userError.error}` : result.flow);
  };
  return (
    <form id="pk-form" onSubmit={submit}>
      <input id="pk-username" name="pk-username" autoComplete="username webauthn" />
      <button id="pk-submit" type="submit" disabled={pending}>
        Continue with a passkey
      </button>
      {message !== null && <p id="pk-message">{message}</p>}
    </form>
  );
}

function ValidateEmail({ emailCode }) {
  const state = useCompleteSignUpWithEmailPassword(api.auth, { emailCode });
  return (
    <p id="link-status">
      {state.status === "error" ? `error: ${state.userError.error}` : state.status}
    </p>
  );
}

function ConfirmEmailChange({ emailCode }) {
  const state = useCompleteChangeEmail(api.auth, { emailCode });
  return (
    <p id="link-status">
      {state.status === "error" ? `error: ${state.userError.error}` : state.status}
    </p>
  );
}

function ChangeEmailForm() {
  const { startChangeEmail } = useStartChangeEmail(api.auth);
  const [message, setMessage] = useState(null);
  const submit = async (event) => {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    const result = await startChangeEmail({
      newEmail: form.get("new-email"),
      currentPassword: form.get("current-password"),
    });
    setMessage(result.success ? "sent: changeEmail" : `error: ${result.userError.error}`);
  };
  return (
    <form id="change-email-form" onSubmit={submit}>
      <input id="new-email" name="new-email" />
      <input id="current-password" name="current-password" type="password" />
      <button id="change-email" type="submit">
        Change email
      </button>
      {message !== null && <p id="change-email-message">{message}</p>}
    </form>
  );
}

function ResetPassword({ emailCode }) {
  const state = useCompletePasswordRecovery(api.auth, { emailCode });
  const [error, setError] = useState(null);
  if (state.status !== "ready") {
    return (
      <p id="link-status">
        {state.status === "error" ? `error: ${state.userError.error}` : state.status}
      </p>
    );
  }
  const submit = async (event) => {
    event.preventDefault();
    const newPassword = new FormData(event.currentTarget).get("new-password");
    const result = await state.completePasswordRecovery({ newPassword });
    setError(result.status === "error" ? result.userError.error : null);
  };
  return (
    <form id="reset-form" onSubmit={submit}>
      <input id="new-password" name="new-password" type="password" />
      <button id="reset" type="submit" disabled={state.pending}>
        Set password
      </button>
      {error !== null && <p id="reset-error">{error}</p>}
    </form>
  );
}

function Profile() {
  const { signOut } = useAuthActions();
  const me = useQuery(api.users.me);
  return (
    <div id="profile">
      <p>
        Signed in as <span id="me">{me === undefined ? "…" : me === null ? "nobody" : (me.name ?? me.email)}</span>
      </p>
      <button id="signout" type="button" onClick={() => void signOut()}>
        Sign out
      </button>
      <ChangeEmailForm />
    </div>
  );
}

function App() {
  const params = new URLSearchParams(window.location.search);
  const page = params.get("page");
  const emailCode = params.get("code");
  const Landing = {
    "validate-email": ValidateEmail,
    "reset-password": ResetPassword,
    "confirm-email-change": ConfirmEmailChange,
  }[page];
  if (Landing !== undefined) {
    return (
      <>
        <Landing emailCode={emailCode} />
        <Authenticated>
          <Profile />
        </Authenticated>
      </>
    );
  }
  return (
    <>
      <AuthLoading>
        <p id="loading">Loading…</p>
      </AuthLoading>
      <Unauthenticated>
        <PasswordForm />
        <GoogleButton />
        <EmailPasswordForm />
        <PasskeyForm />
      </Unauthenticated>
      <Authenticated>
        <Profile />
      </Authenticated>
    </>
  );
}

createRoot(document.getElementById("root")).render(
  <ConvexAuthProvider
    client={convex}
    api={{
      refreshSession: api.auth.refreshSession,
      signOut: api.auth.signOut,
      isAuthenticated: api.auth.isAuthenticated,
    }}
  >
    <App />
  </ConvexAuthProvider>,
);
