// The SSR side of @convex-dev/auth 2.0.0 (unchanged) against the deployment: the sign-in
// proxy, the refresh and sign-out handlers and the server auth checker, run as the app's
// server would run them (WHATWG Request -> Response), with a ConvexHttpClient in the part
// of the browser. Prints one JSON line {ok, checks} and exits 0 when every check passed.
import {
  AUTH_JWT_COOKIE,
  AUTH_REFRESH_COOKIE,
  convexProxyHandler,
  createServerAuthChecker,
  refreshHandler,
  signOutHandler,
} from "@convex-dev/auth/ssr";
import { ConvexHttpClient } from "convex/browser";
import { anyApi } from "convex/server";

const convexUrl = process.env.SYNCLINE_URL;
const app = "http://app.test";
const cookieOptions = { secure: false };
const api = anyApi;
const checks = {};
const check = (label, ok, detail) => {
  checks[label] = ok ? { ok: true } : { ok: false, detail: JSON.stringify(detail) };
};

// The browser's cookie jar for app.test.
const jar = new Map();
const cookieHeader = () => [...jar].map(([k, v]) => `${k}=${v}`).join("; ");
const keep = (response) => {
  for (const line of response.headers.getSetCookie()) {
    const [pair, ...attributes] = line.split(";");
    const [name, value] = pair.split("=");
    const gone = attributes.some((a) => /max-age=0|expires=thu, 01 jan 1970/i.test(a.trim()));
    if (gone || value === "") jar.delete(name.trim());
    else jar.set(name.trim(), value);
  }
  return response;
};
const request = (path, init = {}) =>
  new Request(`${app}${path}`, {
    method: "POST",
    ...init,
    headers: { ...init.headers, origin: app, host: "app.test", cookie: cookieHeader() },
  });

const proxy = convexProxyHandler({
  convexUrl,
  signIn: [api.auth.signUpWithUsernamePassword, api.auth.signInWithUsernamePassword],
  cookieOptions,
});
const refresh = refreshHandler({ convexUrl, refreshSession: api.auth.refreshSession, cookieOptions });
const signOut = signOutHandler({ convexUrl, signOut: api.auth.signOut, cookieOptions });
const checker = createServerAuthChecker({ convexUrl, isAuthenticated: api.auth.isAuthenticated });

// The browser's client talks to the proxy route, as under SSR.
const viaProxy = new ConvexHttpClient(`${app}/auth/signin?path=`, {
  skipConvexDeploymentUrlCheck: true,
  logger: false,
  fetch: async (url, init) => {
    const headers = Object.fromEntries(new Headers(init.headers));
    return keep(await proxy(request(new URL(url).pathname + new URL(url).search, { ...init, headers })));
  },
});

try {
  const up = await viaProxy.mutation(api.auth.signUpWithUsernamePassword, {
    username: "ada",
    password: "correct horse",
  });
  check("sign-up through the proxy completes", up.status === "complete", up);
  check("the refresh token never reaches the page", up.tokens?.refreshToken === undefined, up.tokens);
  check("the cookies are set", jar.has(AUTH_JWT_COOKIE) && jar.has(AUTH_REFRESH_COOKIE), [...jar.keys()]);
  const wrong = await viaProxy.mutation(api.auth.signInWithUsernamePassword, {
    username: "ada",
    password: "wrong horse",
  });
  check("a wrong password is forwarded", wrong.userError?.error === "INVALID_CREDENTIALS", wrong);

  const accessToken = jar.get(AUTH_JWT_COOKIE);
  check("the server sees the session", (await checker(decodeURIComponent(accessToken))) === true, null);

  const before = jar.get(AUTH_REFRESH_COOKIE);
  const refreshed = await (keep(await refresh(request("/auth/refresh")))).json();
  check("refresh answers a new access token", typeof refreshed.tokens?.accessToken === "string", refreshed);
  check("the refresh cookie rotated", jar.get(AUTH_REFRESH_COOKIE) !== before, null);

  const foreign = await refresh(
    new Request(`${app}/auth/refresh`, {
      method: "POST",
      headers: { origin: "https://evil.test", host: "app.test", cookie: cookieHeader() },
    }),
  );
  check("another site's request is refused", foreign.status === 403, foreign.status);

  const out = await (keep(await signOut(request("/auth/signout")))).json();
  check("sign-out answers no tokens", out.tokens === null, out);
  check("sign-out clears the cookies", !jar.has(AUTH_REFRESH_COOKIE), [...jar.keys()]);
  check("the session is over", (await checker(decodeURIComponent(accessToken))) === false, null);
  jar.set(AUTH_REFRESH_COOKIE, before);
  const dead = await refresh(request("/auth/refresh"));
  check("a spent refresh token is refused", dead.status === 401, dead.status);
} catch (error) {
  checks.error = { ok: false, detail: String(error?.stack ?? error) };
}
const ok = Object.values(checks).every((c) => c.ok);
console.log(JSON.stringify({ ok, checks }));
process.exit(ok ? 0 : 1);
