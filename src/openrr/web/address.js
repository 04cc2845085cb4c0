// Settings from the page's address: `?session=…&model=…&role=…&transport=…&autoconnect=0` in the query, the access
// token in the fragment (`#token=JWT`), which the browser never sends to a server (nor in a Referer). An account key
// is never read from the address (it would grant the account to whoever sees the link, the history or a log):
// `?key=` is removed and refused, and so is `?token=`, which did reach the server.

import { TRANSPORTS } from "./connection.js";

/** {settings, model, refused, autoconnect}; secrets are removed from the address bar (and history) once read. */
export function readAddress() {
  const params = new URLSearchParams(location.search);
  const fragment = new URLSearchParams(location.hash.slice(1));
  const settings = {};
  for (const name of ["account", "session"]) if (params.has(name)) settings[name] = params.get(name);
  const token = fragment.get("token");
  if (token) settings.token = token;
  if (params.has("role")) settings.role = params.get("role") === "watcher" ? "watcher" : "controller";
  if (TRANSPORTS.includes(params.get("transport"))) settings.transport = params.get("transport");
  const refused = ["key", "token"].filter((name) => params.has(name));
  if (refused.length || fragment.has("token")) {
    for (const name of refused) params.delete(name);
    fragment.delete("token");
    const query = params.toString();
    const hash = fragment.toString();
    history.replaceState(null, "", `${location.pathname}${query ? `?${query}` : ""}${hash ? `#${hash}` : ""}`);
  }
  return {
    settings,
    model: params.get("model"),
    refused: refused.map((name) => `?${name}=`),
    autoconnect: Boolean(settings.session && token && params.get("autoconnect") !== "0"),
  };
}
