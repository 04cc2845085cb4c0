// The scene tree (Parts): every part of each loaded model is an entity (docs/render-protocol.md). A part's children
// are fetched when it is first expanded, PAGE_SIZE at a time with a "more…" row, so a model of 100,000 parts costs
// nothing until it is opened. Each row has a checkbox that hides or shows its part (and, through the server's
// hierarchical overrides, its subtree), and one row at a time is selected (its part outlined): by a click on the
// row or by a pick in the picture, which opens the tree down to the part hit.
//
// Events: "select" (detail: {entityId, modelEntityId} or {entityId: null}) when the selection changes.

import { $ } from "./dom.js";

const PAGE_SIZE = 100; // children fetched at a time (getChildren's default limit)

/** One row: an entity of a model, its own overrides as far as this page knows them, its children once fetched. */
class Part {
  children = null; // Part[] fetched so far (null: not asked yet)
  total = null; // how many children it has (null: not known yet)
  expanded = false;
  hidden; // its own hidden override: true, false, or undefined (inherits)

  constructor(entityId, name, parent, childCount = null) {
    this.entityId = entityId;
    this.name = name;
    this.parent = parent;
    this.root = parent ? parent.root : this;
    this.total = childCount;
    this.li = document.createElement("li");
    this.row = document.createElement("div");
    this.twisty = document.createElement("button");
    this.check = document.createElement("input");
    this.label = document.createElement("button"); // a button: reachable and pressed with the keyboard too
    this.group = null; // the children's <ul>, made on the first expand
  }

  /** Hidden, all overrides applied (its own value, else its nearest ancestor's, else visible). */
  get effectivelyHidden() {
    for (let p = this; p; p = p.parent) if (p.hidden !== undefined) return p.hidden;
    return false;
  }
}

export class SceneTree extends EventTarget {
  selected = null; // the entityId of the selected part, or null

  #showError;
  #scene; // {entities, setHidden(entity, hidden)}: the models loaded (scene-panel.js)
  #conn = null;
  #parts = new Map(); // entityId -> Part, for every row made
  #roots = []; // one Part per model, in the scene's order
  #list = $("scene-tree");
  #selecting = Promise.resolve(); // the last selection change, which the next one waits for

  constructor({ showError, scene }) {
    super();
    this.#showError = showError;
    this.#scene = scene;
  }

  attach(conn) {
    this.#conn = conn;
    this.#clear();
    this.sync();
    const selected = this.#scene.entities.find((e) => e.selected);
    if (selected) this.#setSelected(selected.entityId);
  }

  detach() {
    this.#conn = null;
    this.#clear();
  }

  /** The models changed (loaded, unloaded, hidden from the Model list): one root row per model. */
  sync() {
    const entities = this.#scene.entities;
    const keep = new Set(entities.map((e) => e.entityId));
    for (const root of this.#roots) if (!keep.has(root.entityId)) this.#forget(root);
    this.#roots = entities.map((entity) => {
      const root = this.#parts.get(entity.entityId) || this.#makeRow(entity.entityId, entity.name, null, entity.childCount ?? null);
      root.hidden = entity.hidden ? true : undefined;
      return root;
    });
    this.#list.replaceChildren(...this.#roots.map((r) => r.li));
    for (const root of this.#roots) this.#refreshSubtree(root);
    if (this.selected !== null && !this.#parts.has(this.selected)) this.#setSelected(null);
  }

  /** A pick in the picture hit `hit` (rayCast's hit: the leaf entityId, modelEntityId): open the tree down to the
   * part, select it and scroll its row into view. */
  async reveal(hit) {
    try {
      const chain = await this.#ancestry(hit.entityId, hit.modelEntityId);
      let part = this.#parts.get(chain[0]);
      for (const id of chain.slice(1)) {
        if (!part) return;
        await this.#expand(part, true);
        part = await this.#findChild(part, id);
      }
      if (!part) return;
      await this.select(part.entityId, { toggle: false });
      part.row.scrollIntoView({ block: "nearest" });
    } catch (err) {
      this.#showError(err);
    }
  }

  /** Select `entityId` (outline it) and clear the previous selection; `toggle`: a second select clears it.
   * One at a time, in order: quick clicks must not leave two parts outlined. */
  select(entityId, options) {
    const done = this.#selecting.then(() => this.#select(entityId, options));
    this.#selecting = done.catch(() => {});
    return done;
  }

  async #select(entityId, { toggle = true } = {}) {
    const previous = this.selected;
    const next = toggle && previous === entityId ? null : entityId;
    if (next === previous) return;
    const conn = this.#conn;
    if (conn?.role === "controller") {
      // Pipelined: the server applies them in order, and both show in the same frame or consecutive ones.
      const sent = [];
      if (previous !== null && this.#parts.has(previous)) {
        sent.push(conn.command("setOverride", { entityId: previous, selected: "inherit" }));
      }
      if (next !== null) sent.push(conn.command("setOverride", { entityId: next, selected: true }));
      await Promise.all(sent);
    }
    this.#setSelected(next);
  }

  #setSelected(entityId) {
    this.#parts.get(this.selected)?.li.classList.remove("selected");
    this.#parts.get(this.selected)?.li.setAttribute("aria-selected", "false");
    this.selected = entityId;
    const part = this.#parts.get(entityId);
    part?.li.classList.add("selected");
    part?.li.setAttribute("aria-selected", "true");
    const detail = { entityId, modelEntityId: part ? part.root.entityId : null };
    this.dispatchEvent(new CustomEvent("select", { detail }));
  }

  // --- fetching --------------------------------------------------------------------------------------------------

  /** Entity ids from the model's root down to `entityId`, asking the server for the parents this page has not seen. */
  async #ancestry(entityId, modelEntityId) {
    const chain = [];
    let id = entityId;
    while (id !== null && id !== undefined) {
      chain.unshift(id);
      if (id === modelEntityId || this.#roots.some((r) => r.entityId === id)) break;
      const known = this.#parts.get(id);
      id = known ? known.parent?.entityId : (await this.#conn.command("getEntity", { entityId: id })).parentId;
    }
    return chain;
  }

  /** The child row `entityId` of `part`, fetching further pages until it comes (null if it never does). */
  async #findChild(part, entityId) {
    for (;;) {
      const found = part.children.find((c) => c.entityId === entityId);
      if (found || part.children.length >= part.total) return found || null;
      await this.#loadPage(part);
    }
  }

  async #expand(part, open) {
    part.expanded = open;
    if (open && part.children === null) await this.#loadPage(part);
    this.#refreshRow(part);
  }

  /** The next page of `part`'s children, with their own overrides. */
  async #loadPage(part) {
    const conn = this.#conn;
    if (!conn) return;
    const offset = part.children?.length || 0;
    const { children, total } = await conn.command("getChildren", { entityId: part.entityId, offset, limit: PAGE_SIZE });
    if (!this.#parts.has(part.entityId)) return; // unloaded meanwhile
    part.children ??= [];
    part.total = total;
    if (!part.group) {
      part.group = document.createElement("ul");
      part.group.setAttribute("role", "group");
      part.li.append(part.group);
    }
    const rows = children.map((c) => this.#makeRow(c.entityId, c.name, part, c.childCount));
    part.children.push(...rows);
    part.group.querySelector(":scope > li.more")?.remove();
    part.group.append(...rows.map((r) => r.li));
    if (part.children.length < total) part.group.append(this.#moreRow(part));
    this.#refreshRow(part);
    // The rows' own overrides (set earlier, maybe by another page) come with the page.
    children.forEach((c, k) => {
      const own = c.overrides?.hidden;
      rows[k].hidden = typeof own === "boolean" ? own : undefined;
      if (c.overrides?.selected === true && this.selected === null) this.#setSelected(rows[k].entityId);
    });
    for (const row of rows) this.#refreshSubtree(row);
  }

  // --- rows ------------------------------------------------------------------------------------------------------

  #makeRow(entityId, name, parent, childCount) {
    const part = new Part(entityId, name, parent, childCount);
    this.#parts.set(entityId, part);
    part.li.setAttribute("role", "treeitem");
    part.li.dataset.entityId = String(entityId);
    part.row.className = "row";
    part.twisty.type = "button";
    part.twisty.className = "twisty";
    part.twisty.onclick = () => this.#expand(part, !part.expanded).catch(this.#showError);
    part.check.type = "checkbox";
    part.check.title = "visible";
    part.check.onchange = () => this.#setHidden(part, !part.check.checked).catch(this.#showError);
    part.label.type = "button";
    part.label.className = "name";
    part.label.textContent = name || `entity ${entityId}`;
    part.label.title = part.label.textContent;
    part.label.onclick = () => this.select(entityId).catch(this.#showError);
    part.row.append(part.twisty, part.check, part.label);
    part.li.append(part.row);
    this.#refreshRow(part);
    return part;
  }

  #moreRow(part) {
    const li = document.createElement("li");
    li.className = "more";
    const button = document.createElement("button");
    button.type = "button";
    button.className = "small";
    button.textContent = `more… (${part.children.length} of ${part.total})`;
    button.onclick = () => {
      button.disabled = true;
      this.#loadPage(part).catch((err) => {
        button.disabled = false;
        this.#showError(err);
      });
    };
    li.append(button);
    return li;
  }

  #refreshRow(part) {
    const leaf = part.total === 0;
    part.twisty.textContent = leaf ? "" : part.expanded ? "▾" : "▸";
    part.twisty.disabled = leaf;
    part.twisty.setAttribute("aria-label", part.expanded ? "collapse" : "expand");
    if (leaf) part.li.removeAttribute("aria-expanded");
    else part.li.setAttribute("aria-expanded", String(part.expanded));
    if (part.group) part.group.hidden = !part.expanded;
    part.check.disabled = this.#conn?.role !== "controller";
  }

  /** Checkboxes of `part` and its loaded descendants: visible as every override on the way down says. */
  #refreshSubtree(part) {
    const hidden = part.effectivelyHidden;
    part.check.checked = !hidden;
    part.li.classList.toggle("hidden-part", hidden);
    for (const child of part.children || []) this.#refreshSubtree(child);
  }

  /** Hide or show a part: its own override, or none where its parent's already says the same. */
  async #setHidden(part, hidden) {
    if (!part.parent) {
      const entity = this.#scene.entities.find((e) => e.entityId === part.entityId);
      if (entity) await this.#scene.setHidden(entity, hidden); // the Model list's state (it syncs this tree)
      return;
    }
    const inherited = part.parent.effectivelyHidden;
    const value = hidden === inherited ? "inherit" : hidden;
    try {
      await this.#conn.command("setOverride", { entityId: part.entityId, hidden: value });
      part.hidden = value === "inherit" ? undefined : value;
    } finally {
      this.#refreshSubtree(part);
    }
  }

  #forget(part) {
    this.#parts.delete(part.entityId);
    for (const child of part.children || []) this.#forget(child);
  }

  #clear() {
    this.#parts.clear();
    this.#roots = [];
    this.#list.replaceChildren();
    if (this.selected !== null) this.#setSelected(null);
  }
}
