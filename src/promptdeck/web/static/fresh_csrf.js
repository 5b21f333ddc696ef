// After signing in again in another tab, the session (and its CSRF token) is new while this
// page still holds the old token: read the new one and send the request once more.

import { ApiError, csrfToken } from "/static/console.js";

/** The current session's CSRF token, read from this page as the server renders it now. */
export async function refreshCsrfToken() {
  const response = await fetch(location.pathname, { credentials: "same-origin", headers: { Accept: "text/html" } });
  if (!response.ok || response.redirected) return null;
  const token = /<meta name="csrf-token" content="([^"]*)"/.exec(await response.text())?.[1];
  if (token) document.querySelector('meta[name="csrf-token"]').content = token;
  return token || null;
}

/** Runs `call()` (an api() or stream() call); a 403 for a stale CSRF token is retried once. */
export async function withFreshCsrf(call) {
  const before = csrfToken();
  try {
    return await call();
  } catch (error) {
    if (error instanceof ApiError && error.status === 403 && /CSRF/.test(error.message)) {
      const token = await refreshCsrfToken();
      if (token && token !== before) return call();
    }
    throw error;
  }
}
