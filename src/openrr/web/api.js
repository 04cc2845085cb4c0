// The service's REST API, same origin as this page: STS tokens and session lookup.

const API_VERSION = "2021-01-01";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(`${code}: ${message}`);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.detail = message;
  }
}

/** GET `path` with a bearer credential; `refused` says which credential a bare 401 refused (the service answers
 * 401 with no body, as ARR does, which would otherwise read "Unauthorized: Unauthorized"). */
async function request(path, authorization, refused) {
  let response;
  try {
    response = await fetch(path, { headers: { Authorization: `Bearer ${authorization}` }, cache: "no-store" });
  } catch (err) {
    throw new ApiError(0, "NetworkError", `${path.split("?")[0]}: ${err.message || err}`);
  }
  const text = await response.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  if (!response.ok) {
    const err = body?.error;
    const message = err?.message || body?.message || body?.detail || text.slice(0, 200);
    if (response.status === 401 && !message) throw new ApiError(401, "Unauthorized", refused);
    throw new ApiError(response.status, err?.code || `HTTP${response.status}`, message || response.statusText);
  }
  return body;
}

/** An STS access token for the account, from its account key (Authorization: Bearer id:key). */
export async function fetchToken(accountId, accountKey) {
  const doc = await request(
    `/accounts/${encodeURIComponent(accountId)}/token`,
    `${accountId}:${accountKey}`,
    "the account key was refused (HTTP 401). Check the account id and the key.",
  );
  if (!doc?.AccessToken) throw new ApiError(500, "BadResponse", "the STS answered without an AccessToken");
  return doc.AccessToken;
}

export function getSession(accountId, sessionId, token) {
  const path = `/accounts/${encodeURIComponent(accountId)}/sessions/${encodeURIComponent(sessionId)}`;
  return request(
    `${path}?api-version=${API_VERSION}`,
    token,
    "the access token was refused (HTTP 401). It may have expired or be another account's: get a new one, or use the account key.",
  );
}

/** The account id inside an STS token (its `accountId` claim, or the subject), if it can be read. */
export function accountFromToken(token) {
  try {
    const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const claims = JSON.parse(atob(payload + "===".slice((payload.length + 3) % 4)));
    return claims.accountId || claims.account_id || claims.sub || null;
  } catch {
    return null;
  }
}

/**
 * Poll the session until it is Ready (returns its document) or fails (throws). `onStatus(doc)` sees every
 * poll; `isCancelled()` stops the wait.
 */
export async function waitForReady(accountId, sessionId, token, { onStatus, isCancelled, intervalMs = 1000 } = {}) {
  for (;;) {
    const doc = await getSession(accountId, sessionId, token);
    onStatus?.(doc);
    if (doc.status === "Ready") return doc;
    if (doc.status !== "Starting") {
      const why = doc.error ? ` (${doc.error.code}: ${doc.error.message})` : "";
      throw new ApiError(409, "SessionNotReady", `session ${sessionId} is ${doc.status}${why}`);
    }
    if (isCancelled?.()) throw new ApiError(0, "Cancelled", "cancelled");
    await new Promise((resolve) => setTimeout(resolve, intervalMs)); // polling interval while Starting
  }
}
