// The material panel: the materials of the selected part (getEntity names their indices, listMaterials their
// values), edited with setMaterial. A material edit changes every mesh that uses the material, in the whole model
// (ARR's material API), unlike the per-part overrides of the scene tree.
//
// Colours: the API speaks linear RGB (glTF's factors); a colour picker shows sRGB. Converted both ways here.

import { $ } from "./dom.js";

/** sRGB transfer function (IEC 61966-2-1), one channel in 0..1. */
export function srgbToLinear(c) {
  return c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
}

export function linearToSrgb(c) {
  return c <= 0.0031308 ? c * 12.92 : 1.055 * c ** (1 / 2.4) - 0.055;
}

/** "#rrggbb" (sRGB, as <input type=color> gives it) -> [r, g, b] linear. */
export function hexToLinear(hex) {
  return [1, 3, 5].map((i) => srgbToLinear(parseInt(hex.slice(i, i + 2), 16) / 255));
}

/** [r, g, b] linear -> "#rrggbb" (sRGB), clamped to what a colour picker can show. */
export function linearToHex(rgb) {
  const byte = (c) => Math.round(255 * linearToSrgb(Math.min(1, Math.max(0, c))));
  return `#${rgb.slice(0, 3).map((c) => byte(c).toString(16).padStart(2, "0")).join("")}`;
}

// Each control: the material field it edits, how a material's value shows in it, and how it reads back.
const FIELDS = {
  "mat-base-color": {
    field: "baseColor",
    show: (m, el) => (el.value = linearToHex(m.baseColor)),
    read: (el, m) => [...hexToLinear(el.value), m.baseColor[3] ?? 1],
  },
  "mat-opacity": {
    field: "baseColor",
    show: (m, el) => (el.value = String(m.baseColor[3] ?? 1)),
    read: (el, m) => [...m.baseColor.slice(0, 3), Number(el.value)],
  },
  "mat-metallic": { field: "metallic", show: (m, el) => (el.value = String(m.metallic)), read: (el) => Number(el.value) },
  "mat-roughness": { field: "roughness", show: (m, el) => (el.value = String(m.roughness)), read: (el) => Number(el.value) },
  "mat-emissive": {
    field: "emissive",
    show: (m, el) => (el.value = linearToHex(m.emissive)),
    read: (el) => hexToLinear(el.value),
  },
  "mat-emissive-strength": {
    field: "emissiveStrength",
    show: (m, el) => (el.value = String(m.emissiveStrength ?? 1)),
    read: (el) => Number(el.value),
  },
  "mat-alpha-mode": { field: "alphaMode", show: (m, el) => (el.value = m.alphaMode), read: (el) => el.value },
  "mat-alpha-cutoff": {
    field: "alphaCutoff",
    show: (m, el) => (el.value = String(m.alphaCutoff ?? 0.5)),
    read: (el) => Number(el.value),
  },
  "mat-unlit": { field: "unlit", show: (m, el) => (el.checked = Boolean(m.unlit)), read: (el) => el.checked },
  "mat-double-sided": {
    field: "doubleSided",
    show: (m, el) => (el.checked = Boolean(m.doubleSided)),
    read: (el) => el.checked,
  },
};

export class MaterialPanel {
  entityId = null; // the entity whose materials are shown
  materials = []; // their listMaterials documents ({index, name, baseColor, ...}), as last applied

  #showError;
  #conn = null;
  #shown = 0; // bumps with each show(): an older, slower answer is dropped

  constructor({ showError }) {
    this.#showError = showError;
    $("mat-index").addEventListener("change", () => this.#fill());
    for (const [id, spec] of Object.entries(FIELDS)) {
      $(id).addEventListener("change", () => this.#edit(spec, $(id)));
    }
  }

  attach(conn) {
    this.#conn = conn;
    this.show(null);
  }

  detach() {
    this.#conn = null;
    this.show(null);
  }

  /** The current material (the one chosen in the panel's list), or undefined. */
  get current() {
    const index = Number($("mat-index").value);
    return this.materials.find((m) => m.index === index);
  }

  /** Show the materials of `entityId` (null: none). A part with no geometry of its own shows its model's. */
  async show(entityId) {
    const ticket = ++this.#shown;
    this.entityId = entityId;
    const conn = this.#conn;
    if (!conn || entityId === null) {
      this.materials = [];
      this.#render("Select a part (in the tree or the picture) to edit its materials.");
      return;
    }
    try {
      const [entity, { materials }] = await Promise.all([
        conn.command("getEntity", { entityId }),
        conn.command("listMaterials", { entityId }),
      ]);
      if (ticket !== this.#shown) return;
      const own = new Set(entity.materials || []);
      const mine = materials.filter((m) => own.has(m.index));
      this.materials = mine.length ? mine : materials;
      const whose = mine.length ? entity.name : `${entity.name} has no geometry of its own: its model's`;
      this.#render(this.materials.length ? `${whose} material(s):` : `${entity.name} has no materials.`);
    } catch (err) {
      if (ticket !== this.#shown) return;
      this.materials = [];
      this.#render("Could not read the materials.");
      this.#showError(err);
    }
  }

  #render(note) {
    $("mat-note").textContent = note;
    const select = $("mat-index");
    select.replaceChildren(
      ...this.materials.map((m) => {
        const option = document.createElement("option");
        option.value = String(m.index);
        option.textContent = `${m.index}: ${m.name || "unnamed"}`;
        return option;
      }),
    );
    $("mat-fields").hidden = this.materials.length === 0;
    $("material-controls").disabled = this.#conn?.role !== "controller" || this.materials.length === 0;
    this.#fill();
  }

  /** Show the current material's values in the controls. */
  #fill() {
    const m = this.current;
    if (!m) return;
    for (const [id, spec] of Object.entries(FIELDS)) spec.show(m, $(id));
    const textures = Object.entries(m.textures || {}).filter(([, has]) => has).map(([name]) => name);
    $("mat-textures").textContent = textures.length ? `Textures: ${textures.join(", ")} (multiplied by these values).` : "";
  }

  /** One control changed: setMaterial with its field; on a refusal, the error shows and the control goes back. */
  async #edit(spec, el) {
    const m = this.current;
    const conn = this.#conn;
    if (!m || !conn) return;
    const value = spec.read(el, m);
    try {
      await conn.command("setMaterial", { entityId: this.entityId, material: m.index, [spec.field]: value });
      m[spec.field] = value;
    } catch (err) {
      this.#showError(err);
    } finally {
      this.#fill();
    }
  }
}
