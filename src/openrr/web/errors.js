// The error banner over the picture: what went wrong, with the error's code (also in data-code, for tests).

import { ApiError } from "./api.js";
import { $ } from "./dom.js";
import { ProtocolError } from "./protocol.js";

/** {code, message} of an error from the service's API, the render server, or the browser. */
export function describeError(err) {
  if (err instanceof ProtocolError || err instanceof ApiError) return { code: err.code, message: err.detail };
  return { code: err?.name || "Error", message: String(err?.message || err) };
}

export class ErrorBanner {
  constructor() {
    this.lastError = null; // {code, message} of the last error shown (kept after the banner is dismissed)
    this.show = this.show.bind(this); // handed around as a callback
    $("error-close").addEventListener("click", () => this.clear());
  }

  show(err, hint = "") {
    const { code, message } = describeError(err);
    this.lastError = { code, message };
    $("error-text").textContent = `${code}: ${message}${hint ? ` ${hint}` : ""}`;
    $("error").hidden = false;
    $("error").dataset.code = code;
  }

  clear() {
    $("error").hidden = true;
    $("error-text").textContent = "";
    delete $("error").dataset.code;
  }
}
