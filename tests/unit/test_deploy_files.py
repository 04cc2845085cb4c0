"""deploy/: the container build files and the Kubernetes manifests, checked for what they must do without a
registry or a cluster (tests/test_deploy_manifests.py applies the manifests to a real API server).

No image is built here (no registry is reachable); instead each Containerfile's own install steps are read and
held against this machine (Debian 12, as the images' python:3.11-slim-bookworm base): the control plane's
requirement list is produced by running the Containerfile's own snippet, and the render image's apt packages are
held against the libraries Mesa EGL really loads here.
"""

from __future__ import annotations

import base64
import importlib.metadata as metadata
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]
from kubernetes.utils import parse_quantity
from packaging.requirements import Requirement

from openrr import tls
from openrr.config import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
MANIFESTS = DEPLOY / "kubernetes"

# What the control plane must not carry (tests/unit/test_layers.py holds the same for imports).
RENDER_DISTRIBUTIONS = {"moderngl", "aiortc", "av", "opencv-python-headless", "simplejpeg", "trimesh", "numpy", "scipy"}
GL_PACKAGE = re.compile(r"^lib(egl|gl|gles|glx|opengl|osmesa|gbm)|mesa", re.IGNORECASE)
MESA_EGL_PACKAGES = {"libegl1", "libegl-mesa0", "libgl1", "libgl1-mesa-dri", "libgles2"}


# --- reading a Containerfile ----------------------------------------------------------------------------------


def instructions(name: str) -> list[list[tuple[str, str]]]:
    """The file's stages, each a list of (INSTRUCTION, arguments) with continuation lines joined."""
    text = re.sub(r"\\\n", " ", (DEPLOY / name).read_text())
    stages: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        if keyword.upper() == "FROM" or not stages:
            stages.append([])
        stages[-1].append((keyword.upper(), rest.strip()))
    return stages


def final_stage(name: str) -> list[tuple[str, str]]:
    return instructions(name)[-1]


def last(stage: list[tuple[str, str]], keyword: str) -> str:
    found = [rest for k, rest in stage if k == keyword]
    assert found, f"no {keyword}"
    return found[-1]


def apt_packages(stage: list[tuple[str, str]]) -> set[str]:
    packages: set[str] = set()
    for keyword, rest in stage:
        if keyword != "RUN":
            continue
        for command in re.split(r"&&|;", rest):
            words = shlex.split(command)
            if words[:2] == ["apt-get", "install"]:
                packages |= {w for w in words[2:] if not w.startswith("-")}
    return packages


def user_is_non_root(stage: list[tuple[str, str]]) -> bool:
    user, _, group = last(stage, "USER").partition(":")
    return user.isdigit() and int(user) != 0 and (not group or int(group) != 0)


# --- the control-plane image ----------------------------------------------------------------------------------


def image_requirements(name: str) -> list[str]:
    """What an image pip-installs: the output of its Containerfile's own snippet, run on this tree."""
    build = instructions(name)[0]
    run = next(rest for k, rest in build if k == "RUN" and "python -c" in rest)
    code = shlex.split(run.split("python -c", 1)[1].split(">", 1)[0])[0]
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return [line for line in out.stdout.splitlines() if line.strip()]


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_closure(requirements: list[str]) -> set[str]:
    """Distributions pip installs for `requirements`: each with its dependencies (for this interpreter, with the
    extras asked for), as the versions installed here declare them."""
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [Requirement(r) for r in requirements]
    while todo:
        req = todo.pop()
        key = (_canonical(req.name), frozenset(req.extras))
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            continue
        for dep in map(Requirement, dist.requires or []):
            if dep.marker is None or any(dep.marker.evaluate({"extra": e}) for e in req.extras or {""}):
                todo.append(dep)
    return {name for name, _ in seen}


IMPORT_WITH_ONLY = """
import importlib, importlib.abc, importlib.metadata, json, sys
allowed = set(json.loads(sys.argv[1]))
owners = importlib.metadata.packages_distributions()
canonical = lambda n: n.replace("_", "-").replace(".", "-").lower()


class OnlyThoseInstalled(importlib.abc.MetaPathFinder):
    # As if the image's distributions were the only ones installed: optional imports (httpx tries rich) fail.
    def find_spec(self, name, path=None, target=None):
        dists = {canonical(d) for d in owners.get(name.partition(".")[0], [])} - {"openrr"}
        if dists and not dists & allowed:
            raise ModuleNotFoundError(f"{name} ({', '.join(sorted(dists))}) is not in the image", name=name)
        return None


sys.meta_path.insert(0, OnlyThoseInstalled())
for module in sys.argv[2:]:
    importlib.import_module(module)
"""


# What `openrr serve --hosting kubernetes` imports.
SERVE_MODULES = ["openrr.serve", "openrr.services", "openrr.app", "openrr.cli.main", "openrr.hosting.kubernetes"]


def test_the_control_plane_image_installs_what_serve_imports_and_none_of_the_render_stack() -> None:
    closure = installed_closure(image_requirements("control-plane.Containerfile"))
    assert closure & RENDER_DISTRIBUTIONS == set(), "the control-plane image would install the render stack"
    # What `openrr serve --hosting kubernetes` on PostgreSQL imports (psycopg: SQLAlchemy loads it at connect),
    # imported with nothing but the image's distributions importable.
    out = subprocess.run(
        [sys.executable, "-c", IMPORT_WITH_ONLY, json.dumps(sorted(closure)), *SERVE_MODULES, "psycopg"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, f"the control plane needs what its image lacks: {out.stderr[-2000:]}"
    # The package itself goes in without its core dependencies (the union of every layer, render included).
    final = final_stage("control-plane.Containerfile")
    pip_installs = [rest for k, rest in final if k == "RUN" and "pip install" in rest]
    assert any("--no-deps" in part and ".whl" in part for run in pip_installs for part in run.split("&&"))


def test_the_control_plane_image_has_no_gl_and_runs_serve_as_a_non_root_user() -> None:
    final = final_stage("control-plane.Containerfile")
    assert {p for p in apt_packages(final) if GL_PACKAGE.search(p)} == set()
    assert last(final, "FROM").startswith("python:3.11-slim")
    assert json.loads(last(final, "ENTRYPOINT")) == ["openrr"]
    assert json.loads(last(final, "CMD"))[0] == "serve"
    assert user_is_non_root(final)


# --- the converter image -------------------------------------------------------------------------------------


def test_the_converter_image_converts_with_only_its_distributions_and_no_gl(tmp_path: Path) -> None:
    import trimesh

    requirements = image_requirements("converter.Containerfile")
    assert not any(Requirement(r).name == "openrr" for r in requirements), "pip would fetch `openrr` from the index"
    closure = installed_closure(requirements)
    assert closure >= {"numpy", "trimesh", "scipy", "pygltflib", "laspy", "lazrs", "pye57", "psycopg"}
    assert closure & {"moderngl", "aiortc", "av", "opencv-python-headless", "simplejpeg"} == set()
    final = final_stage("converter.Containerfile")
    apt = apt_packages(final)
    assert "assimp-utils" in apt  # FBX input (conversions/formats.py runs `assimp`)
    assert {p for p in _dpkg_depends_closure(apt) if GL_PACKAGE.search(p)} == set()
    # A real conversion in an interpreter that sees only the image's distributions: a glTF box, and the same box
    # as FBX through assimp (as CI installs it), after importing what `openrr serve` and the worker import.
    work = tmp_path / "in"
    work.mkdir()
    trimesh.creation.box().export(work / "box.glb")
    inputs = ["box.glb"]
    if shutil.which("assimp"):
        subprocess.run(["assimp", "export", "box.glb", "box.fbx", "-ffbxa"], cwd=work, check=True, capture_output=True)
        inputs.append("box.fbx")
    code = IMPORT_WITH_ONLY + (
        "from pathlib import Path\n"
        "from openrr.conversions.converter import convert\n"
        "import laspy, pye57, lazrs\n"
        f"for name in {inputs!r}:\n"
        f"    convert(Path({str(work)!r}), name, Path({str(tmp_path / 'out')!r}), name + '.arrAsset')\n"
    )
    modules = [*SERVE_MODULES, "openrr.conversions.worker", "openrr.conversions.converter", "psycopg"]
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(sorted(closure)), *modules],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, f"a conversion needs what the converter image lacks: {out.stderr[-2000:]}"
    assert sorted(p.name for p in (tmp_path / "out").glob("*.arrAsset")) == sorted(f"{n}.arrAsset" for n in inputs)
    assert any("--no-deps" in part and ".whl" in part for k, run in final if k == "RUN" for part in run.split("&&"))
    assert last(final, "FROM").startswith("python:3.11-slim-bookworm")
    assert json.loads(last(final, "ENTRYPOINT")) == ["openrr"]
    assert json.loads(last(final, "CMD"))[0] == "serve"
    assert user_is_non_root(final)


# --- the render-server images ---------------------------------------------------------------------------------


def _dpkg_owner(path: str) -> str | None:
    out = subprocess.run(["dpkg", "-S", path], capture_output=True, text=True)
    if out.returncode != 0:
        return None
    return out.stdout.split(":", 1)[0].strip()


def _dpkg_depends_closure(packages: set[str]) -> set[str]:
    """The installed packages `packages` pull in (Depends and Pre-Depends, first alternative), themselves too."""
    closure: set[str] = set()
    todo = list(packages)
    while todo:
        package = todo.pop()
        if package in closure:
            continue
        closure.add(package)
        out = subprocess.run(
            ["dpkg-query", "-W", "-f=${Depends}, ${Pre-Depends}", package], capture_output=True, text=True
        )
        for alternatives in out.stdout.split(","):
            first = alternatives.split("|")[0].strip().split(" ")[0].split(":")[0]
            if first:
                todo.append(first)
    return closure


def test_the_render_image_installs_the_packages_of_every_library_mesa_egl_loads() -> None:
    final = final_stage("render-server.Containerfile")
    packages = apt_packages(final)
    assert packages >= MESA_EGL_PACKAGES
    assert last(final, "FROM").startswith("python:3.11-slim-bookworm")
    # Render a frame the way the render server does (moderngl, EGL, headless) and list the GL libraries loaded.
    code = (
        "import moderngl\n"
        "ctx = moderngl.create_context(standalone=True, backend='egl')\n"
        "fbo = ctx.simple_framebuffer((8, 8)); fbo.use(); fbo.clear(1, 0, 0, 1); fbo.read()\n"
        "print('\\n'.join(sorted({l.split()[-1] for l in open('/proc/self/maps') if '.so' in l})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    gl_libraries = [p for p in out.stdout.splitlines() if re.search(r"lib(EGL|GL|gallium|glapi)|_dri\.so", p)]
    assert any("libEGL_mesa" in p for p in gl_libraries), gl_libraries
    owners = {p: _dpkg_owner(p) for p in gl_libraries if not p.startswith(sys.prefix)}
    assert None not in owners.values(), owners
    closure = _dpkg_depends_closure(packages)
    assert {p: o for p, o in owners.items() if o not in closure} == {}, "libraries the image's packages lack"


def test_the_render_image_runs_the_render_server_with_every_dependency_as_nobody() -> None:
    final = final_stage("render-server.Containerfile")
    assert json.loads(last(final, "ENTRYPOINT")) == ["openrr", "render-server"]
    pip = [rest for k, rest in final if k == "RUN" and "pip install" in rest]
    assert pip and all("--no-deps" not in run for run in pip), "the render server needs the whole dependency list"
    assert last(final, "USER") == "65534:65534"


def test_the_gpu_image_prefers_nvidia_egl_over_mesa_and_asks_the_runtime_for_graphics() -> None:
    stage = final_stage("render-server-gpu.Containerfile")
    base = re.search(r"ARG RENDER_IMAGE=(\S+)", (DEPLOY / "render-server-gpu.Containerfile").read_text())
    assert base and last(stage, "FROM") == "${RENDER_IMAGE}"
    assert base.group(1) in (DEPLOY / "render-server.Containerfile").read_text(), "the Mesa image's documented tag"
    env = dict(re.findall(r"(\w+)=(\S+)", " ".join(rest for k, rest in stage if k == "ENV")))
    assert "graphics" in env["NVIDIA_DRIVER_CAPABILITIES"].split(",")  # the runtime mounts libEGL_nvidia
    run = " ".join(rest for k, rest in stage if k == "RUN")
    vendor = re.search(r"printf '(\{.*?\})\\n'\s*>\s*(\S+)", run)
    assert vendor, "the NVIDIA EGL vendor file"
    assert json.loads(vendor.group(1))["ICD"]["library_path"] == "libEGL_nvidia.so.0"
    # glvnd tries vendor files in name order: NVIDIA's must sort before the one Mesa's package installs.
    mesa_vendor = subprocess.run(["dpkg", "-L", "libegl-mesa0"], capture_output=True, text=True, check=True).stdout
    mesa_json = next(Path(p).name for p in mesa_vendor.split() if "egl_vendor.d/" in p)
    assert Path(vendor.group(2)).name < mesa_json
    assert json.loads(last(stage, "ENTRYPOINT")) == ["openrr", "render-server"]
    assert user_is_non_root(stage)


# --- the manifests --------------------------------------------------------------------------------------------


def manifest_objects(*, postgres: bool = True) -> list[dict[str, Any]]:
    """Every object of the files kustomization.yaml lists (postgres.yaml left out on request)."""
    listed = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())["resources"]
    objects: list[dict[str, Any]] = []
    for name in listed:
        if name == "postgres.yaml" and not postgres:
            continue
        objects += [o for o in yaml.safe_load_all((MANIFESTS / name).read_text()) if o]
    return objects


def find(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name)


def test_kustomization_lists_every_manifest_and_kubectl_renders_it() -> None:
    listed = set(yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())["resources"])
    assert listed == {p.name for p in MANIFESTS.glob("*.yaml")} - {"kustomization.yaml"}
    out = subprocess.run(["kubectl", "kustomize", str(MANIFESTS)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert len([o for o in yaml.safe_load_all(out.stdout) if o]) == len(manifest_objects())


def test_every_setting_in_the_configmap_is_an_openrr_setting_and_parses(monkeypatch: pytest.MonkeyPatch) -> None:
    data = find(manifest_objects(), "ConfigMap", "openrr-settings")["data"]
    fields = {f"OPENRR_{name.upper()}" for name in Settings.model_fields}
    # pydantic-settings ignores unknown OPENRR_* variables: a misspelt key would silently do nothing.
    assert set(data) - fields == set()
    for key, value in data.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert settings.hosting == "local"  # the Deployment's --hosting=kubernetes flag, not the ConfigMap, sets it
    assert settings.kube_resources["Premium"]["limits"]["nvidia.com/gpu"] == "1"
    low, high = settings.kube_port_range
    assert 1024 < low < high <= 65535 and (high - low + 1) // 2 >= sum(settings.capacity.values())
    assert settings.conversion_workers == 0  # the control-plane image has no conversion code


def test_the_deployment_runs_serve_with_flags_it_accepts_and_secrets_make_secrets_makes(tmp_path: Path) -> None:
    from openrr.cli.main import build_parser

    objects = manifest_objects()
    deployment = find(objects, "Deployment", "openrr")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert deployment["spec"]["replicas"] == 2
    args = build_parser().parse_args([*container["command"][1:], *container["args"]])
    assert args.hosting == "kubernetes" and args.host == "$(POD_IP)"
    assert pod["securityContext"]["runAsNonRoot"] and container["securityContext"]["readOnlyRootFilesystem"]
    # The Secrets it reads are those make-secrets.sh makes (run here, printing instead of applying).
    out = subprocess.run(
        [str(MANIFESTS / "make-secrets.sh"), "--network", "10.0.0.0/8", "--dry-run", "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    made = {s["metadata"]["name"]: s for s in yaml.safe_load_all(out.stdout) if s}
    for env in container["env"]:
        ref = env.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            assert ref["key"] in made[ref["name"]]["data"], ref
    (ca_volume,) = [v for v in pod["volumes"] if v.get("secret", {}).get("secretName") == "openrr-ca"]
    ca_mount = next(m for m in container["volumeMounts"] if m["name"] == ca_volume["name"])
    config = find(objects, "ConfigMap", "openrr-settings")["data"]
    assert config["OPENRR_CA_DIR"] == ca_mount["mountPath"]
    assert set(made["openrr-ca"]["data"]) == {tls.CA_FILE, tls.CA_KEY_FILE}
    # A replica with that CA at its pod IP keeps it (the mount is read-only), and render pods' leaves on nodes in
    # the network are issued; an address outside is refused.
    ca_dir = tmp_path / "ca"
    ca_dir.mkdir()
    for key, value in made["openrr-ca"]["data"].items():
        (ca_dir / key).write_bytes(base64.b64decode(value))
    names = json.loads(config["OPENRR_EXTRA_HOSTNAMES"])
    assert not tls.ensure_local_ca(ca_dir, ["10.244.3.17", *names])
    tls.issue_server_certificate(ca_dir, ["10.1.2.3"])
    with pytest.raises(ValueError):
        tls.issue_server_certificate(ca_dir, ["192.168.9.9"])
    assert (tmp_path / "o" / "cert.pem").read_bytes() == (ca_dir / tls.CA_FILE).read_bytes()
    from cryptography.fernet import Fernet

    Fernet(base64.b64decode(made["openrr-secrets"]["data"]["secrets-key"]))


def test_the_converter_deployment_runs_workers_off_the_service_with_the_control_planes_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from openrr.cli.main import build_parser

    objects = manifest_objects()
    control, converter = find(objects, "Deployment", "openrr"), find(objects, "Deployment", "openrr-converter")
    pod, control_pod = converter["spec"]["template"]["spec"], control["spec"]["template"]["spec"]
    (container,), (control_container,) = pod["containers"], control_pod["containers"]
    assert converter["spec"]["replicas"] == 1
    assert container["image"] == "openrr/converter:latest"
    assert container["image"] in (DEPLOY / "converter.Containerfile").read_text(), "the documented tag"
    args = build_parser().parse_args([*container["command"][1:], *container["args"]])
    assert args.hosting == "kubernetes" and args.host == "$(POD_IP)"
    # The same ServiceAccount (so RBAC is unchanged), Secrets, ConfigMap, CA mount and user as the control plane.
    assert pod["serviceAccountName"] == control_pod["serviceAccountName"]
    assert pod["securityContext"] == control_pod["securityContext"]
    assert container["securityContext"] == control_container["securityContext"]
    assert container["envFrom"] == control_container["envFrom"]
    assert [e for e in container["env"] if "valueFrom" in e] == [
        e for e in control_container["env"] if "valueFrom" in e
    ]
    assert container["volumeMounts"] == control_container["volumeMounts"]
    # Its settings: the ConfigMap's, with the Deployment's own env over them (as the kubelet orders them).
    for key, value in find(objects, "ConfigMap", "openrr-settings")["data"].items():
        monkeypatch.setenv(key, value)
    for env in container["env"]:
        if "value" in env:
            monkeypatch.setenv(env["name"], env["value"])
    settings = Settings()
    assert settings.conversion_workers > 0
    # Scratch (data_dir/conversions, the workers' TMPDIR too) on a bounded emptyDir: each worker's largest input
    # and an output as large.
    data_mount = next(m for m in container["volumeMounts"] if m["mountPath"] == str(settings.data_dir))
    (data,) = [v for v in pod["volumes"] if v["name"] == data_mount["name"]]
    assert settings.conversions_dir.is_relative_to(settings.data_dir)
    limit = parse_quantity(data["emptyDir"]["sizeLimit"])  # type: ignore[no-untyped-call]
    assert limit >= settings.conversion_workers * 2 * settings.conversion_max_input_bytes
    # The API Service does not select it: conversions' load stays off the replicas answering clients.
    service = find(objects, "Service", "openrr")
    labels = converter["spec"]["template"]["metadata"]["labels"]
    assert not service["spec"]["selector"].items() <= labels.items()
    assert control["spec"]["selector"]["matchLabels"].items() - labels.items(), "the Deployments' pods must not mix"


def test_postgres_yaml_stands_alone_and_matches_make_secrets_url() -> None:
    objects = [o for o in yaml.safe_load_all((MANIFESTS / "postgres.yaml").read_text()) if o]
    service = find(objects, "Service", "openrr-postgres")
    statefulset = find(objects, "StatefulSet", "openrr-postgres")
    labels = statefulset["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    script = (MANIFESTS / "make-secrets.sh").read_text()
    env = {e["name"]: e for e in statefulset["spec"]["template"]["spec"]["containers"][0]["env"]}
    url = re.search(r'database_url="(postgresql\+psycopg://[^"]+)"', script)
    assert url, "make-secrets.sh's in-cluster URL"
    assert f"{env['POSTGRES_USER']['value']}:$password@{service['metadata']['name']}." in url.group(1)
    assert url.group(1).endswith("/" + env["POSTGRES_DB"]["value"])
    assert env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "openrr-postgres", "key": "password"}


VERB_OF_CALL = {"read": "get", "list": "list", "create": "create", "patch": "patch", "replace": "update"}
VERB_OF_CALL["delete"] = "delete"


def test_rbac_grants_every_api_call_the_kubernetes_backend_makes() -> None:
    """Each `CoreV1Api` call in hosting/ (a list handed to a WatchCache needs `watch` too) is granted: namespaced
    ones by the Role, node ones by the ClusterRole; nothing is granted on a resource the backend never touches."""
    sources = [p.read_text() for p in (ROOT / "src/openrr/hosting").glob("kube*.py")]
    calls = {m for text in sources for m in re.findall(r"\.(read|list|create|patch|replace|delete)_(\w+)", text)}
    watched = {m for text in sources for m in re.findall(r"WatchCache\([^)]*?\.list_(\w+)", text, re.DOTALL)}
    needed: dict[tuple[str, str], set[str]] = {}
    for call, target in calls:
        scope, resource = (
            ("namespace", target.removeprefix("namespaced_")) if "namespaced_" in target else ("cluster", target)
        )
        if resource not in ("pod", "secret", "node"):
            continue
        verbs = needed.setdefault((scope, resource + "s"), set())
        verbs.add(VERB_OF_CALL[call])
        if call == "list" and target in watched:
            verbs.add("watch")
    objects = manifest_objects()
    granted: dict[tuple[str, str], set[str]] = {}
    for kind, scope in (("Role", "namespace"), ("ClusterRole", "cluster")):
        for role in (o for o in objects if o["kind"] == kind):
            for rule in role["rules"]:
                for resource in rule["resources"]:
                    granted.setdefault((scope, resource), set()).update(rule["verbs"])
    missing = {k: v - granted.get(k, set()) for k, v in needed.items() if v - granted.get(k, set())}
    assert missing == {}, "the backend calls what RBAC does not grant"
    assert set(granted) <= set(needed), "RBAC grants on resources the backend never touches"
