// The scene panel: the models loaded (load, hide, unload) and the cut planes. A watcher sees the list; only the
// controller changes it. Event "change" whenever the list of models or their state changes (the scene tree follows).

import { add, scale, worldBounds } from "./camera.js";
import { $ } from "./dom.js";
import { describeError } from "./errors.js";

export class ScenePanel extends EventTarget {
  entities = []; // the session's models, as the render server describes them (entityId, name, bounds, ...)
  cutPlanes = []; // the planes set: [{normal, point}]
  loadProgress = null; // 0..1 while a model loads
  lastLoad = null; // {ok: true, ...entity} or {ok: false, code, message}

  #showError;
  #frameModels; // aims the camera at the models (after a load)
  #conn = null;
  #linkModel = null; // the link's ?model=, loaded on the first connection

  constructor({ showError, frameModels }) {
    super();
    this.#showError = showError;
    this.#frameModels = frameModels;
    $("model-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const url = $("model-url").value.trim();
      if (url) this.loadModel(url);
    });
    $("cut-x").addEventListener("change", () => this.#applyCutPlanes());
    $("cut-y").addEventListener("change", () => this.#applyCutPlanes());
  }

  /** A model named in the page's link: loaded once, when a controller first connects. */
  loadOnConnect(url) {
    $("model-url").value = url;
    this.#linkModel = url;
  }

  /** Connected: show the session's scene (from the welcome); a controller loads the link's model. */
  attach(conn, { entities = [], cutPlanes = [] }) {
    this.#conn = conn;
    this.entities = entities;
    this.cutPlanes = cutPlanes;
    const controller = conn.role === "controller";
    $("model-controls").disabled = !controller;
    $("view-controls").disabled = !controller;
    const hasCut = (axis) => cutPlanes.some((p) => p.normal.every((v, i) => v === (i === axis ? 1 : 0)));
    $("cut-x").checked = hasCut(0);
    $("cut-y").checked = hasCut(1);
    this.#render();
    if (!controller) return;
    // Unless the session already shows it (e.g. after a reconnect).
    const model = this.#linkModel;
    this.#linkModel = null;
    const existing = model && entities.find((e) => e.source === model.split("?")[0]);
    if (model && !existing) this.loadModel(model);
    else if (existing) this.#frameModels();
  }

  detach() {
    this.#conn = null;
    $("model-controls").disabled = true;
    $("view-controls").disabled = true;
  }

  async loadModel(url) {
    const conn = this.#conn;
    if (!conn) return;
    const progress = $("load-progress");
    const result = $("load-result");
    progress.hidden = false;
    progress.value = 0;
    this.loadProgress = 0;
    result.className = "note";
    result.textContent = `Loading ${url.split("?")[0]}…`;
    $("load").disabled = true;
    const started = performance.now();
    try {
      const doc = await conn.command("loadModel", { url }, {
        onProgress: (p) => {
          progress.value = p;
          this.loadProgress = p;
        },
      });
      progress.value = 1;
      this.loadProgress = 1;
      const { type, id, ok, ...entity } = doc;
      this.entities = [...this.entities, entity];
      this.lastLoad = { ok: true, ...entity };
      const seconds = ((performance.now() - started) / 1000).toFixed(2);
      const primitives = entity.points ? `${entity.points} points` : `${entity.triangles} triangles`;
      const warnings = entity.warnings?.length ? ` ${entity.warnings.join(" ")}` : "";
      result.className = warnings ? "note bad" : "note ok";
      result.textContent = `Loaded ${entity.name}: ${primitives}, ${entity.meshes} mesh(es) in ${seconds} s.${warnings}`;
      this.#render();
      this.#frameModels();
      if (this.cutPlanes.length) this.#applyCutPlanes();
    } catch (err) {
      const { code, message } = describeError(err);
      this.lastLoad = { ok: false, code, message };
      this.loadProgress = null;
      result.className = "note bad";
      result.textContent = `${code}: ${message}`;
      this.#showError(err);
    } finally {
      progress.hidden = true;
      $("load").disabled = false;
    }
  }

  /** Hide or show a model (all its parts but those with their own hidden override). */
  setHidden(entity, hidden) {
    return this.#setOverride(entity, { hidden });
  }

  /** The selected part (scene-tree.js) is in the model `modelEntityId` (null: none): its row is marked. */
  markSelected(modelEntityId) {
    for (const entity of this.entities) entity.selected = entity.entityId === modelEntityId;
    this.#render();
  }

  async #setOverride(entity, fields) {
    await this.#conn.command("setOverride", { entityId: entity.entityId, ...fields });
    Object.assign(entity, fields);
    this.#render();
  }

  async #unload(entity) {
    try {
      await this.#conn.command("unloadModel", { entityId: entity.entityId });
      this.entities = this.entities.filter((e) => e !== entity);
      this.#render();
    } catch (err) {
      this.#showError(err);
    }
  }

  #render() {
    const list = $("entities");
    list.replaceChildren();
    const controller = this.#conn?.role === "controller";
    const button = (text, onclick) => {
      const b = document.createElement("button");
      b.type = "button";
      b.className = "small";
      b.textContent = text;
      b.onclick = onclick;
      return b;
    };
    for (const entity of this.entities) {
      const li = document.createElement("li");
      li.dataset.entityId = String(entity.entityId);
      li.classList.toggle("selected", Boolean(entity.selected));
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = `${entity.name} · ${entity.points ? `${entity.points} pts` : `${entity.triangles} tris`}`;
      name.title = entity.source || entity.name;
      li.append(name);
      if (controller) {
        li.append(
          button(entity.hidden ? "show" : "hide", () => this.setHidden(entity, !entity.hidden).catch(this.#showError)),
          button("unload", () => this.#unload(entity)),
        );
      }
      list.append(li);
    }
    this.dispatchEvent(new Event("change"));
  }

  /** Cut planes through the models' centre, along +X and/or +Y as the checkboxes say. */
  async #applyCutPlanes() {
    const conn = this.#conn;
    if (!conn) return;
    const bounds = worldBounds(this.entities);
    const centre = bounds ? scale(add(bounds.min, bounds.max), 0.5) : [0, 0, 0];
    const planes = [];
    if ($("cut-x").checked) planes.push({ normal: [1, 0, 0], point: centre });
    if ($("cut-y").checked) planes.push({ normal: [0, 1, 0], point: centre });
    try {
      await conn.command("setCutPlanes", { planes });
      this.cutPlanes = planes;
    } catch (err) {
      this.#showError(err);
    }
  }
}
