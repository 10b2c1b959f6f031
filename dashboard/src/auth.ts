// The admin key: kept in this tab's sessionStorage only, checked against the server.
import { API_URL } from "./api";

const KEY = "syncline.adminKey";

export function storedKey(): string | null {
  return sessionStorage.getItem(KEY);
}

export function storeKey(key: string): void {
  sessionStorage.setItem(KEY, key);
}

export function forgetKey(): void {
  sessionStorage.removeItem(KEY);
}

export function authHeader(key: string): Record<string, string> {
  return { Authorization: `Convex ${key}` };
}

/** Whether the server takes `key` as its admin key (the health endpoint is admin-only). */
export async function checkKey(key: string): Promise<"ok" | "wrong" | string> {
  let response: Response;
  try {
    response = await fetch(`${API_URL}/api/admin/dashboard/health`, { headers: authHeader(key) });
  } catch (e) {
    return `The server did not answer (${(e as Error).message})`;
  }
  if (response.status === 401) return "wrong";
  if (!response.ok) return `The server answered ${response.status}`;
  return "ok";
}

/** The admin key for a one-time login link's token; throws with the server's message. */
export async function redeemToken(token: string): Promise<string> {
  const response = await fetch(`${API_URL}/api/admin/dashboard/login`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ token }),
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok || typeof body.adminKey !== "string") {
    throw new Error(body.message ?? `The server answered ${response.status}`);
  }
  return body.adminKey;
}
