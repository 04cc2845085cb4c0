// Renders one glTF scene with three.js as a good glTF viewer does, with exactly the camera, environment map,
// punctual lights and background that openrr is given, and hands the picture back as a PNG data URL.
// window.renderScene(spec): spec = {model, width, height, background: [r, g, b] (sRGB 0..1),
//   camera: {position, target, up, fovY (degrees, vertical), near, far},
//   environment: {url, intensity} | null, lights: [{kind, color (linear), intensity, range|null, position,
//   direction (the way the light travels), innerConeAngle, outerConeAngle}]}.
import * as THREE from "three";
import { GLTFLoader } from "three/addons/loaders/GLTFLoader.js";
import { HDRLoader } from "three/addons/loaders/HDRLoader.js";

// Fair settings (render-stack-notes.md): one pixel per pixel, sRGB output, no tone mapping, MSAA on.
const renderer = new THREE.WebGLRenderer({ antialias: true, preserveDrawingBuffer: true });
renderer.setPixelRatio(1);
renderer.outputColorSpace = THREE.SRGBColorSpace;
renderer.toneMapping = THREE.NoToneMapping;
document.body.appendChild(renderer.domElement);
const pmrem = new THREE.PMREMGenerator(renderer);
const environments = new Map(); // url -> prefiltered (PMREM) texture, made once per page

async function environment(url) {
  if (!environments.has(url)) {
    const equirect = await new HDRLoader().loadAsync(url);
    equirect.mapping = THREE.EquirectangularReflectionMapping;
    environments.set(url, pmrem.fromEquirectangular(equirect).texture);
    equirect.dispose();
  }
  return environments.get(url);
}

function linear([r, g, b]) {
  return new THREE.Color().setRGB(r, g, b, THREE.LinearSRGBColorSpace);
}

// KHR_lights_punctual -> three.js, as three's own GLTFLoader maps the extension (decay 2, distance = range or 0
// for none, penumbra from the cone angles); three's directional and spot lights shine from position to target.
function light(spec, scene) {
  const color = linear(spec.color);
  const range = spec.range ?? 0;
  const [px, py, pz] = spec.position;
  const [dx, dy, dz] = spec.direction;
  let made;
  if (spec.kind === "directional") {
    made = new THREE.DirectionalLight(color, spec.intensity);
    made.position.set(-dx, -dy, -dz);
    made.target.position.set(0, 0, 0);
  } else if (spec.kind === "point") {
    made = new THREE.PointLight(color, spec.intensity, range, 2);
    made.position.set(px, py, pz);
  } else {
    const penumbra = 1.0 - spec.innerConeAngle / spec.outerConeAngle;
    made = new THREE.SpotLight(color, spec.intensity, range, spec.outerConeAngle, penumbra, 2);
    made.position.set(px, py, pz);
    made.target.position.set(px + dx, py + dy, pz + dz);
  }
  scene.add(made);
  if (made.target) scene.add(made.target);
}

function dispose(root) {
  root.traverse((object) => {
    object.geometry?.dispose();
    for (const material of [object.material ?? []].flat()) {
      for (const value of Object.values(material)) if (value?.isTexture) value.dispose();
      material.dispose();
    }
  });
}

window.renderScene = async (spec) => {
  renderer.setSize(spec.width, spec.height, false);
  const scene = new THREE.Scene();
  scene.background = new THREE.Color().setRGB(...spec.background, THREE.SRGBColorSpace);
  if (spec.environment) {
    scene.environment = await environment(spec.environment.url);
    scene.environmentIntensity = spec.environment.intensity;
  }
  for (const each of spec.lights) light(each, scene);
  const gltf = await new GLTFLoader().loadAsync(spec.model);
  scene.add(gltf.scene);
  const c = spec.camera;
  const camera = new THREE.PerspectiveCamera(c.fovY, spec.width / spec.height, c.near, c.far);
  camera.position.set(...c.position);
  camera.up.set(...c.up);
  camera.lookAt(...c.target);
  renderer.render(scene, camera);
  const png = renderer.domElement.toDataURL("image/png");
  dispose(gltf.scene);
  return png;
};
window.referenceReady = true;
