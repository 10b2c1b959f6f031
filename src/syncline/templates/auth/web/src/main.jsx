// A Convex Auth page: @convex-dev/auth/react and convex/react, as for a Convex backend.
import { ConvexAuthProvider, useAuthActions } from "@convex-dev/auth/react";
import {
  Authenticated,
  AuthLoading,
  ConvexReactClient,
  Unauthenticated,
  useMutation,
  useQuery,
} from "convex/react";
import { anyApi } from "convex/server";
import React, { useState } from "react";
import { createRoot } from "react-dom/client";

const convex = new ConvexReactClient(import.meta.env.VITE_CONVEX_URL ?? "http://127.0.0.1:3210");

function message(error) {
  return error?.data?.message ?? error?.message ?? String(error);
}

function SignIn() {
  const { signIn } = useAuthActions();
  const [flow, setFlow] = useState("signIn");
  const [error, setError] = useState(null);
  const submit = (event) => {
    event.preventDefault();
    setError(null);
    signIn("password", new FormData(event.currentTarget)).catch((e) => setError(message(e)));
  };
  return (
    <form onSubmit={submit}>
      <h1>{flow === "signIn" ? "Sign in" : "Create an account"}</h1>
      {flow === "signUp" && <input name="name" placeholder="Name" />}
      <input name="email" type="email" placeholder="Email" required />
      <input name="password" type="password" placeholder="Password (8+ characters)" required />
      <input name="flow" type="hidden" value={flow} />
      <button type="submit">{flow === "signIn" ? "Sign in" : "Sign up"}</button>
      <button type="button" onClick={() => setFlow(flow === "signIn" ? "signUp" : "signIn")}>
        {flow === "signIn" ? "Create an account instead" : "Sign in instead"}
      </button>
      {error && <p role="alert">{error}</p>}
    </form>
  );
}

function Notes() {
  const { signOut } = useAuthActions();
  const me = useQuery(anyApi.users.me);
  const notes = useQuery(anyApi.notes.mine) ?? [];
  const add = useMutation(anyApi.notes.add);
  const [text, setText] = useState("");
  return (
    <main>
      <p>
        Signed in as {me?.name ?? me?.email ?? "…"}{" "}
        <button onClick={() => void signOut()}>Sign out</button>
      </p>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          void add({ text }).then(() => setText(""));
        }}
      >
        <input value={text} onChange={(e) => setText(e.target.value)} placeholder="A note" />
        <button type="submit">Add</button>
      </form>
      <ul>
        {notes.map((note) => (
          <li key={note._id}>{note.text}</li>
        ))}
      </ul>
    </main>
  );
}

createRoot(document.getElementById("root")).render(
  <ConvexAuthProvider client={convex}>
    <AuthLoading>Loading…</AuthLoading>
    <Unauthenticated>
      <SignIn />
    </Unauthenticated>
    <Authenticated>
      <Notes />
    </Authenticated>
  </ConvexAuthProvider>,
);
