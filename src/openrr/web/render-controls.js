// The Rendering controls: the environment that lights the scene (the built-in one, or an equirectangular .hdr/.png/
// .jpg the server fetches from a URL, as it fetches models), exposure, tone mapping and anti-aliasing. A watcher sees
// them; only the controller changes them.

import { $ } from "./dom.js";

// The exposure slider counts in stops (EV): each step of 1 doubles the light.
const evToExposure = (ev) => 2 ** ev;
const exposureToEv = (exposure) => Math.log2(exposure);

export class RenderControls {
  environment = null; // the server's description of the environment (getScene's `environment`)
  output = null; // {exposure, toneMapping, antialiasing} as last applied

  #showError;
  #conn = null;

  constructor({ showError }) {
    this.#showError = showError;
    $("env-source").addEventListener("change", () => this.#showSource());
    $("env-form").addEventListener("submit", (e) => {
      e.preventDefault();
      this.#applyEnvironment();
    });
    $("exposure").addEventListener("input", () => this.#showExposure(evToExposure(Number($("exposure").value))));
    $("exposure").addEventListener("change", () =>
      this.#setOutput({ exposure: evToExposure(Number($("exposure").value)) }),
    );
    $("tone-mapping").addEventListener("change", () => this.#setOutput({ toneMapping: $("tone-mapping").value }));
    $("antialiasing").addEventListener("change", () => this.#setOutput({ antialiasing: $("antialiasing").value }));
  }

  /** Connected: show the session's environment and output settings (getScene); enable for a controller. */
  async attach(conn) {
    this.#conn = conn;
    $("render-controls").disabled = conn.role !== "controller";
    try {
      const scene = await conn.command("getScene");
      this.environment = scene.environment ?? null;
      this.#show(scene.output ?? {});
      this.#showEnvironment();
      $("env-result").className = "note";
    } catch (err) {
      this.#showError(err);
    }
  }

  detach() {
    this.#conn = null;
    $("render-controls").disabled = true;
  }

  #show(output) {
    this.output = { ...this.output, ...output };
    const { exposure = 1, toneMapping = "none", antialiasing } = this.output;
    $("exposure").value = String(exposureToEv(exposure));
    this.#showExposure(exposure);
    $("tone-mapping").value = toneMapping;
    $("antialiasing").value = antialiasing ?? ""; // null: the server's default (chosen by measurement)
  }

  #showExposure(exposure) {
    $("exposure-value").textContent = `×${exposure.toFixed(2)}`;
  }

  #showSource() {
    const url = $("env-source").value === "url";
    $("env-url-row").hidden = !url;
    $("env-url").required = url;
  }

  /** The server's environment ({builtIn, url, cubeUrls, intensity}) in the controls. */
  #showEnvironment() {
    const env = this.environment;
    if (!env) return;
    const url = env.url || env.cubeUrls?.[0] || "";
    $("env-source").value = env.builtIn ? "default" : "url";
    if (url && !$("env-url").value) $("env-url").value = url; // the server shows no SAS token: keep the typed one
    $("env-intensity").value = String(env.intensity ?? 1);
    this.#showSource();
    $("env-result").textContent = `Environment: ${env.builtIn ? "built-in studio" : url}.`;
  }

  async #applyEnvironment() {
    const conn = this.#conn;
    if (!conn) return;
    const url = $("env-source").value === "url" ? $("env-url").value.trim() : null;
    const intensity = $("env-intensity").value; // empty: the server's default
    const fields = { url, intensity: intensity === "" ? undefined : Number(intensity) };
    const result = $("env-result");
    $("env-apply").disabled = true;
    result.className = "note";
    result.textContent = url ? `Loading ${url.split("?")[0]}…` : "Built-in environment…";
    try {
      await conn.command("setEnvironment", fields);
      this.environment = (await conn.command("getScene")).environment ?? null;
      this.#showEnvironment();
      result.className = "note ok";
    } catch (err) {
      result.className = "note bad";
      result.textContent = `${err.code || "Error"}: ${err.detail || err.message}`;
      this.#showError(err);
    } finally {
      $("env-apply").disabled = false;
    }
  }

  /** setOutput with one field; on a refusal the controls go back to what the server has. */
  async #setOutput(fields) {
    const conn = this.#conn;
    if (!conn) return;
    try {
      await conn.command("setOutput", fields);
      this.#show(fields);
    } catch (err) {
      this.#showError(err);
      this.#show({});
    }
  }
}
