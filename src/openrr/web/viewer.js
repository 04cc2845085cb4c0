// The openrr browser viewer: finds a session through the service's API, connects to its render server, shows its
// video on a canvas and drives the scene (models, orbit camera, picking, cut planes).
//
// This module only puts the parts together; each owns its state and its part of the page:
//   connection.js   token, session lookup, connect / disconnect / reconnect      (the Session box)
//   display.js      the picture, whatever the video transport, and the stream size (the canvas)
//   meters.js       fps, command -> display latency, transport, server figures  (the HUD)
//   input.js        camera input (drag, wheel, pinch, turntable) and picking     (the canvas, View, Picked)
//   scene-panel.js  models (load, hide, unload) and cut planes                   (Model, View)
//   scene-tree.js   each model's parts: expand, hide, select (also by a pick)     (Parts)
//   render-controls.js  environment, exposure, tone mapping, anti-aliasing        (Rendering)
//   material-panel.js   the selected part's materials                            (Material)
//
// window.openrrViewer exposes the live state for tests and for the console.

import { ApiError } from "./api.js";
import { readAddress } from "./address.js";
import { Connection } from "./connection.js";
import { Display } from "./display.js";
import { ErrorBanner } from "./errors.js";
import { CameraInput } from "./input.js";
import { MaterialPanel } from "./material-panel.js";
import { Meters } from "./meters.js";
import { RenderControls } from "./render-controls.js";
import { ScenePanel } from "./scene-panel.js";
import { SceneTree } from "./scene-tree.js";

const errors = new ErrorBanner();
const showError = errors.show;
const connection = new Connection({ showError, clearError: () => errors.clear() });
// The closures below read parts made after them: they run only once the page is up.
const meters = new Meters({ transport: () => ({ transport: display.transport, detail: display.transportDetail }) });
const display = new Display({ meters, showError });
const scene = new ScenePanel({ showError, frameModels: () => input.frameAll() });
const tree = new SceneTree({ showError, scene });
const input = new CameraInput({ display, meters, showError, scene, onPick: (hit) => tree.reveal(hit) });
const renderControls = new RenderControls({ showError });
const materials = new MaterialPanel({ showError });
scene.addEventListener("change", () => tree.sync());
tree.addEventListener("select", ({ detail: { entityId, modelEntityId } }) => {
  scene.markSelected(modelEntityId);
  materials.show(entityId);
});

// Connected: every part takes the session, in this order (a controller sends its stream size, then its camera,
// then loads the link's model).
connection.addEventListener("open", ({ detail: { conn, transport, transportError } }) => {
  display.attach(conn, transport, transportError);
  meters.attach(conn);
  input.attach(conn, conn.welcome.camera);
  scene.attach(conn, conn.welcome);
  tree.attach(conn);
  materials.attach(conn);
  renderControls.attach(conn);
});
connection.addEventListener("close", () => {
  display.detach();
  meters.detach();
  input.detach();
  scene.detach();
  tree.detach();
  materials.detach();
  renderControls.detach();
});

/** Nothing left to show: no camera change waiting, no scene command unanswered, and the newest frame drawn
 * shows every acknowledged scene change. (Tests wait on it instead of sleeping.) */
function idle() {
  const conn = connection.current;
  const last = display.lastFrame;
  if (!conn || display.busy || input.busy || conn.busy || !last) return false;
  if (last.commandId === null) return true; // no stamp to tell (a WebRTC picture under 256 pixels wide)
  return last.commandId >= conn.lastApplied;
}

/** Show `owner`'s fields as the viewer's own (read and write), for tests, benchmarks and the console. */
function expose(target, owner, names) {
  for (const name of names) {
    Object.defineProperty(target, name, {
      get: () => owner[name],
      set: (value) => {
        owner[name] = value;
      },
      enumerable: true,
    });
  }
}

const viewer = {
  connect: () => connection.connect(),
  disconnect: () => connection.disconnect(),
  loadModel: (url) => scene.loadModel(url),
  frameAll: () => input.frameAll(),
  refreshTransportStats: () => display.refreshTransportStats(),
  idle,
};
expose(viewer, connection, ["status", "connected", "role", "sessionId", "renderer"]);
expose(viewer, display, [
  "transport", "transportDetail", "transportError", "framesReceived", "framesDisplayed", "framesSkipped",
  "framesRepeated", "bytesReceived", "webrtc", "lastFrame", "streamSize",
]);
expose(viewer, meters, ["fps", "lastLatencyMs", "medianLatencyMs", "latencySamples", "latencyLog", "serverStats"]);
expose(viewer, input, ["camera", "lastHit"]);
expose(viewer, scene, ["entities", "cutPlanes", "loadProgress", "lastLoad"]);
expose(viewer, errors, ["lastError"]);
Object.defineProperty(viewer, "selectedEntity", { get: () => tree.selected, enumerable: true });
expose(viewer, materials, ["materials"]);
expose(viewer, renderControls, ["environment", "output"]);
Object.defineProperty(viewer, "connection", { get: () => connection.current, enumerable: false });
window.openrrViewer = viewer;

const address = readAddress();
connection.fill(address.settings);
if (address.model) scene.loadOnConnect(address.model);
if (address.refused.length) {
  showError(
    new ApiError(0, "Refused", `${address.refused.join(" and ")} in the address is not accepted`),
    "Put an access token after # (…/viewer/?session=ID#token=JWT), or type the account key into the form.",
  );
} else if (address.autoconnect) {
  connection.connect();
}
