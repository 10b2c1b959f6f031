// A sign-in page written for Convex Auth: @convex-dev/auth/react and convex/react, unchanged.
import { ConvexAuthProvider, useAuthActions } from "@convex-dev/auth/react";
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

function errorMessage(error) {
  return error?.data?.message ?? error?.message ?? String(error);
}

function PasswordForm() {
  const { signIn } = useAuthActions();
  const [flow, setFlow] = useState("signIn");
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const submit = (event) => {
    event.preventDefault();
    setError(null);
    setBusy(true);
    signIn("password", new FormData(event.currentTarget))
      .catch((e) => setError(errorMessage(e)))
      .finally(() => setBusy(false));
  };
  return (
    <form id="password-form" onSubmit={submit}>
      <h1 id="flow">{flow === "signIn" ? "Sign in" : "Sign up"}</h1>
      {flow === "signUp" && <input id="name" name="name" placeholder="Name" />}
      <input id="email" name="email" placeholder="Email" />
      <input id="password" name="password" type="password" placeholder="Password" />
      <input name="flow" type="hidden" value={flow} />
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
      <button id="oauth" type="button" onClick={() => void signIn("fake")}>
        Sign in with the test provider
      </button>
      {error !== null && <p id="error">{error}</p>}
    </form>
  );
}

function Profile() {
  const { signOut } = useAuthActions();
  const me = useQuery(anyApi.users.me);
  return (
    <div id="profile">
      <p>
        Signed in as <span id="me">{me === undefined ? "…" : me === null ? "nobody" : me.name}</span>
      </p>
      <button id="signout" type="button" onClick={() => void signOut()}>
        Sign out
      </button>
    </div>
  );
}

function App() {
  return (
    <>
      <AuthLoading>
        <p id="loading">Loading…</p>
      </AuthLoading>
      <Unauthenticated>
        <PasswordForm />
      </Unauthenticated>
      <Authenticated>
        <Profile />
      </Authenticated>
    </>
  );
}

createRoot(document.getElementById("root")).render(
  <ConvexAuthProvider client={convex}>
    <App />
  </ConvexAuthProvider>,
);
