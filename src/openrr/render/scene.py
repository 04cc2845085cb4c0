"""Model loading: a local path or an http(s) URL (SAS URLs, and plain blob URLs of linked storage) → GPU-ready
numpy arrays.

trimesh parses (glTF/GLB, OBJ, PLY, STL); this module fetches the bytes, flattens trimesh's scene graph
into one `MeshData` per placed geometry, and turns every failure into a `ModelLoadError` whose message
says what went wrong without ever repeating a URL's query string (it holds SAS signatures). A converted
`.arrAsset` (see docs/arrasset.md) skips trimesh: its arrays are views into the fetched bytes.
"""

from __future__ import annotations

import io
import json
import logging
import os
import posixpath
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Protocol, cast
from urllib.parse import quote, unquote, urljoin, urlsplit, urlunsplit

import httpx
import numpy as np
import numpy.typing as npt
import trimesh
from PIL import Image
from trimesh.resolvers import Resolver
from trimesh.visual.color import DEFAULT_COLOR, ColorVisuals
from trimesh.visual.material import PBRMaterial, SimpleMaterial
from trimesh.visual.texture import TextureVisuals

from openrr.model.texture_guard import DEFAULT_TEXTURES, TextureLimits, fail_parse, remember_name, texture_limits
from openrr.protocol.redaction import display_url, redact
from openrr.storage.account_area import AccountArea, AreaRefused, decode, opened_path, shown
from openrr.storage.decoding import ACCEPT_ENCODING, BoundedDecoder, DecodeFailure, DecodeLimit
from openrr.storage.guard import FetchPolicy, FetchRefused
from openrr.storage.guard_http import guarded_client
from openrr.storage.session_access import SESSION_STORAGE, SessionStorage

if TYPE_CHECKING:
    from openrr.model.raycast import TriangleChunks

logger = logging.getLogger(__name__)

Float32Array = npt.NDArray[np.float32]
UInt32Array = npt.NDArray[np.uint32]
UInt8Array = npt.NDArray[np.uint8]
Progress = Callable[[float], None]

# file extension → trimesh file type
FORMATS = {".glb": "glb", ".gltf": "gltf", ".obj": "obj", ".ply": "ply", ".stl": "stl"}
FORMAT_NAMES = {"glb": "GLB", "gltf": "glTF", "obj": "OBJ", "ply": "PLY", "stl": "STL"}
ASSET_SUFFIX = ".arrasset"  # compared lower-case: ARR writes `.arrAsset`
# share of the progress bar given to fetching the bytes; parsing and flattening take the rest
FETCH_SHARE = 0.9
CHUNK = 1 << 20
PLACEHOLDER_TEXEL = (100, 100, 100, 255)  # trimesh.visual.material.color_image's default


class ModelLoadError(Exception):
    """The message says precisely what went wrong (unreachable URL + status, corrupt file, unsupported format…)."""


# -- local files: only through a LocalFiles, never by opening a tenant's path here --------------------------

LOCAL_FILES_OFF = "local files are not enabled for this session"


class LocalFileRefused(ModelLoadError):
    """A local file could not be read; the message never tells what exists outside the account's area.

    `over_limit`: the file lies in the area but is larger than the bytes left for the model (fails the whole load,
    where a missing texture only leaves the model untextured)."""

    def __init__(self, message: str, *, over_limit: bool = False) -> None:
        super().__init__(message)
        self.over_limit = over_limit


class LocalFiles(Protocol):
    """How a render server reads a tenant's local files: `AreaFiles` directly, or the control plane's file broker
    (hosting/file_broker.py) for render servers that run as a user who cannot read the storage roots."""

    def read(self, requested: str, max_bytes: int) -> bytes:
        """The whole file a tenant named (a path relative to its area, an absolute path or a file:// URL, decoded
        once). Raises LocalFileRefused for a path outside the area, a missing or unreadable file, a directory, or a
        file over `max_bytes`; the first four with one and the same message."""
        ...

    def display(self, requested: str) -> str:
        """How to name the file in messages: the tenant's own words, nothing resolved from them."""
        ...


class AreaFiles:
    """LocalFiles read straight from an account's area (storage/account_area.py), by a process that may."""

    def __init__(self, area: AccountArea) -> None:
        self.area = area

    def read(self, requested: str, max_bytes: int) -> bytes:
        try:
            return self.area.read(requested, max_bytes)
        except AreaRefused as e:
            raise LocalFileRefused(e.message, over_limit=e.over_limit) from None

    def display(self, requested: str) -> str:
        return shown(requested)


@dataclass
class MeshData:
    positions: Float32Array
    """(N, 3) in the model's own coordinates, node transforms of the file's scene graph applied."""
    normals: Float32Array
    """(N, 3) unit length (computed when the file has none); zeros for point clouds without normals."""
    colors: Float32Array
    """(N, 4) in 0..1: vertex colour × material base colour (white when neither is given)."""
    indices: UInt32Array | None
    """(M, 3) triangle indices into positions; None for a point cloud."""
    uvs: Float32Array | None
    """(N, 2) texture coordinates in glTF's convention: (0, 0) is the top-left texel, row 0 of `texture`."""
    texture: UInt8Array | None
    """(H, W, 4) RGBA base-colour texture, first row at the top of the image."""
    double_sided: bool = True
    """False when back faces are culled: a glTF material without `doubleSided: true` (glTF's default, also for a mesh
    with no material), or an .arrAsset's opaqueMaterialDefaultSidedness. Formats with no such flag stay double-sided."""
    unlit: bool = False
    """True when the material is to be shown without lighting (an .arrAsset's unlitMaterials)."""


@dataclass
class ModelData:
    name: str
    """File name from the source."""
    meshes: list[MeshData]
    bounds_min: Float32Array
    """(3,)"""
    bounds_max: Float32Array
    """(3,)"""
    triangles: int
    points: int
    """Total points of point-cloud meshes."""
    collision: TriangleChunks | None = None
    """Ray-cast structure stored in an .arrAsset; None: a RayCaster builds it when the model is added."""

    @property
    def primitives(self) -> int:
        return self.triangles + self.points


@dataclass(frozen=True)
class HttpOptions:
    """What a render server's http(s) model loads may reach, and how far encoded downloads may expand."""

    policy: FetchPolicy = field(default_factory=FetchPolicy)
    """Non-public addresses allowed (storage/guard.py); every connection and redirect hop is checked."""
    max_compression_ratio: float = 200.0
    """Decoded bytes per transferred byte of a Content-Encoding download (judged past 1 MiB decoded)."""


DEFAULT_HTTP = HttpOptions()


def load_model(
    source: str,
    progress: Progress | None = None,
    *,
    timeout_s: float = 60.0,
    max_bytes: int = 2 * 1024**3,
    storage: SessionStorage = SESSION_STORAGE,
    http: HttpOptions = DEFAULT_HTTP,
    local_files: LocalFiles | None = None,
    textures: TextureLimits = DEFAULT_TEXTURES,
) -> ModelData:
    """Load a model or an .arrAsset from a local path, a file:// URL or an http(s):// URL.

    Local paths and file:// URLs are read only through `local_files` (the session account's area), with every file
    the model references; None refuses them. `textures` bounds every texture's size, checked before decoding.

    A blob URL without a query string is signed with the read token of the linked storage account that covers
    it (`storage`: what the control plane granted this render server); when a blob service refuses a URL without
    its own SAS, the error says whether its storage account is linked.

    `timeout_s` bounds each network wait (connecting, and each read while downloading), not the whole
    download, so a large model on a slow but live link still arrives. `max_bytes` bounds everything fetched
    for the model (its file plus external buffers, materials and textures), decoded. `http` says which non-public
    addresses may be fetched from (none by default) and caps the compression ratio of encoded downloads.
    """
    report = MonotonicProgress(progress)
    report(0.0)
    started = time.perf_counter()
    parts = urlsplit(source)
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        display = safe_url(source)
        name = PurePosixPath(unquote(parts.path)).name
        asset = _is_asset(name)
        file_type = "" if asset else _file_type(name, display)
        fetcher = _HttpFetcher(
            storage.authorize(source), display, timeout_s, max_bytes, storage.denied_hint(source), http
        )
        with fetcher:
            data = fetcher.fetch_main(lambda f: report(f * FETCH_SHARE))
            if asset:
                return _asset(data, name, display, started, report)
            scene = _parse(data, file_type, source, display, fetcher.resolver(), textures)
    else:
        if local_files is None:
            raise LocalFileRefused(LOCAL_FILES_OFF)
        display = local_files.display(source)
        name = _local_name(source)
        asset = _is_asset(name)
        file_type = "" if asset else _file_type(name, display)
        budget = _Budget(max_bytes)
        data = budget.took(local_files.read(source, budget.remaining))
        report(FETCH_SHARE)
        if asset:
            return _asset(data, name, display, started, report)
        scene = _parse(data, file_type, source, display, _LocalResolver(local_files, source, display, budget), textures)
    del data
    model = model_of_scene(name, scene, display, gltf_sidedness=file_type in ("glb", "gltf"))
    report(1.0)
    logger.info(
        "loaded %s: %d meshes, %d triangles, %d points in %.3f s",
        display,
        len(model.meshes),
        model.triangles,
        model.points,
        time.perf_counter() - started,
    )
    return model


def read_scene(
    path: Path,
    display: str,
    max_bytes: int = 2 * 1024**3,
    resolver: Resolver | None = None,
    textures: TextureLimits = DEFAULT_TEXTURES,
) -> trimesh.Scene:
    """Parse a local model file with trimesh, the files it references resolved beside it (the converter's entry).

    `display` names the file in error messages, e.g. its path in the input container rather than a work directory.
    """
    file_type = _file_type(path.name, display)
    data = _read_local(path, max_bytes, display)
    return _parse(data, file_type, display, display, resolver or DirectoryResolver(path, display), textures)


def model_of_scene(name: str, scene: trimesh.Scene, display: str, *, gltf_sidedness: bool = False) -> ModelData:
    """Flatten a parsed trimesh scene into one `MeshData` per placed geometry, as `load_model` does.

    `gltf_sidedness`: the scene came from glTF, whose materials are single-sided unless they say `doubleSided`
    (culling their back faces halves llvmpipe's triangle work on closed meshes); otherwise every mesh is double-sided.
    """
    try:
        meshes = list(_flatten(scene, gltf_sidedness))
    except Exception as e:
        # trimesh hands back shapes and encodings its parsers let through; a surprise here is still this
        # file's problem, but keep the traceback in the log in case it is ours
        logger.exception("flattening %s failed", display)
        raise ModelLoadError(f"cannot read the geometry of {display}: {type(e).__name__}: {e}"[:400]) from e
    if not meshes:
        raise ModelLoadError(f"{display} contains no geometry (no triangles or points)")
    return _model(name, meshes)


def _is_asset(name: str) -> bool:
    return PurePosixPath(name).suffix.lower() == ASSET_SUFFIX


def _asset(data: bytes, name: str, display: str, started: float, report: MonotonicProgress) -> ModelData:
    # imported here: the conversions package builds on this module
    from openrr.model.arrasset import AssetFormatError, read_asset

    if not data:
        raise ModelLoadError(f"{display} is empty (0 bytes)")
    try:
        model = read_asset(data, name)
    except AssetFormatError as e:
        raise ModelLoadError(f"cannot read {display} as an .arrAsset: {e}") from None
    report(1.0)
    logger.info(
        "loaded asset %s: %d meshes, %d triangles, %d points in %.3f s",
        display,
        len(model.meshes),
        model.triangles,
        model.points,
        time.perf_counter() - started,
    )
    return model


def safe_url(url: str) -> str:
    """The URL without query, fragment or credentials: what may appear in messages and logs (the one redactor)."""
    return display_url(url)


def _redact(text: str, url: str) -> str:
    # httpx and parsers rarely quote URLs in their messages; when they do, the signature must not leak
    query = urlsplit(url).query
    if query:
        text = text.replace(query, "<redacted>")
    return redact(text)


def _file_type(name: str, display: str) -> str:
    suffix = PurePosixPath(name).suffix.lower()
    if suffix not in FORMATS:
        shown = f"'{suffix}'" if suffix else "(no extension)"
        raise ModelLoadError(
            f"unsupported model format {shown} for {display}: supported are {', '.join(FORMATS)} and .arrAsset"
        )
    return FORMATS[suffix]


def _read_local(path: Path, max_bytes: int, display: str | None = None) -> bytes:
    shown = str(path) if display is None else display
    try:
        size = path.stat().st_size
        if path.is_dir():
            raise ModelLoadError(f"{shown} is a directory, not a model file")
        if size > max_bytes:
            raise ModelLoadError(f"{shown} is {size} bytes, over the limit of {max_bytes} bytes")
        return path.read_bytes()
    except FileNotFoundError:
        raise ModelLoadError(f"file not found: {shown}") from None
    except PermissionError:
        raise ModelLoadError(f"permission denied reading {shown}") from None
    except OSError as e:
        raise ModelLoadError(f"cannot read {shown}: {e.strerror or e}") from None


class MonotonicProgress:
    """Progress reports never go backwards and stay in 0..1, whatever stage reports them."""

    def __init__(self, callback: Progress | None) -> None:
        self.callback = callback
        self.last = 0.0

    def __call__(self, value: float) -> None:
        value = min(1.0, max(self.last, value))
        self.last = value
        if self.callback is not None:
            self.callback(value)


class _HttpFetcher:
    """One httpx client for the model and whatever it references (glTF buffers, OBJ materials, textures).

    Its connections go through the address guard; bodies are decoded here, step by step, so that decoded bytes
    and the compression ratio are capped while decoding (a gzip bomb stops after its first MiB or so)."""

    def __init__(
        self,
        url: str,
        display: str,
        timeout_s: float,
        max_bytes: int,
        denied_hint: str | None = None,
        http: HttpOptions = DEFAULT_HTTP,
    ) -> None:
        self.url = url
        self.display = display
        self.denied_hint = denied_hint
        """Added to a blob service's refusal (it sends x-ms-error-code) of the model itself: linked or not."""
        self.timeout_s = timeout_s
        self.remaining = max_bytes
        self.max_bytes = max_bytes
        self.max_ratio = http.max_compression_ratio
        # Only encodings decoded here are asked for: httpx would decode others whole, past every cap.
        self.client = guarded_client(http.policy, httpx.Timeout(timeout_s), {"Accept-Encoding": ACCEPT_ENCODING})

    def __enter__(self) -> _HttpFetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()

    def fetch_main(self, report: Progress) -> bytes:
        return self.fetch(self.url, report)

    def fetch(self, url: str, report: Progress | None = None) -> bytes:
        shown = safe_url(url)
        chunks: list[bytes] = []
        try:
            with self.client.stream("GET", url) as response:
                if response.status_code != 200:
                    # Azure storage names the reason (AuthenticationFailed, BlobNotFound…) in a header;
                    # the body is not shown: an auth failure's body quotes the string that was signed
                    code = response.headers.get("x-ms-error-code")
                    detail = f", {code}" if code else ""
                    hint = ""
                    if code and self.denied_hint and url == self.url and response.status_code in (401, 403, 404, 409):
                        hint = f": {self.denied_hint}"
                    raise ModelLoadError(
                        f"HTTP {response.status_code} {response.reason_phrase}{detail} fetching {shown}{hint}"
                    )
                total = _content_length(response)
                if total is not None and total > self.remaining:
                    raise ModelLoadError(f"{shown} is {total} bytes, over the limit of {self.max_bytes} bytes")
                decoder = BoundedDecoder(
                    response.headers.get("content-encoding"), self.remaining, self.max_ratio, step=CHUNK
                )
                for raw in response.iter_raw(CHUNK):
                    chunks.extend(decoder.feed(raw))
                    if report is not None and total:
                        # Content-Length counts transferred (possibly compressed) bytes
                        report(response.num_bytes_downloaded / total)
                chunks.append(decoder.finish())
        except FetchRefused as e:
            raise ModelLoadError(f"cannot load {shown}: {e}") from None
        except DecodeLimit as e:
            setting = "model_max_bytes" if e.limit == "bytes" else "model_max_compression_ratio"
            flag = setting.replace("_", "-")
            del chunks
            raise ModelLoadError(
                f"{shown} {e}: over the limit of {self.max_bytes if e.limit == 'bytes' else self.max_ratio:g}"
                f" (--{flag} / OPENRR_{setting.upper()})"
            ) from None
        except DecodeFailure as e:
            raise ModelLoadError(f"cannot decode {shown}: {e}") from None
        except httpx.ConnectTimeout:
            raise ModelLoadError(f"timed out after {self.timeout_s:g} s connecting to {shown}") from None
        except httpx.TimeoutException:
            raise ModelLoadError(f"timed out after {self.timeout_s:g} s waiting for {shown}") from None
        except httpx.ConnectError as e:
            reason = _redact(str(e) or type(e).__name__, url)
            raise ModelLoadError(f"cannot connect to {shown}: {reason}") from None
        except httpx.TooManyRedirects:
            raise ModelLoadError(f"{shown} redirects too often (more than {self.client.max_redirects})") from None
        except httpx.HTTPError as e:
            reason = _redact(f"{type(e).__name__}: {e}", url)
            raise ModelLoadError(f"download of {shown} failed: {reason}") from None
        data = b"".join(chunks)
        self.remaining -= len(data)
        if report is not None:
            report(1.0)
        return data

    def resolver(self) -> Resolver:
        return _HttpResolver(self)


def _content_length(response: httpx.Response) -> int | None:
    try:
        return int(response.headers["content-length"])
    except (KeyError, ValueError):
        return None


class _HttpResolver(Resolver):
    """Fetches files a model references (glTF buffers and images, OBJ's .mtl and textures) beside its URL.

    The model URL's query string goes along: a container SAS token signs every blob in the container.
    References to another host are refused, so a model cannot make the server fetch arbitrary URLs.
    """

    def __init__(self, fetcher: _HttpFetcher) -> None:
        self.fetcher = fetcher
        parts = urlsplit(fetcher.url)
        self.base = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
        self.query = parts.query

    def get(self, key: str) -> bytes:
        target = urlsplit(urljoin(self.base, key))
        origin = urlsplit(self.base)
        if (target.scheme, target.netloc) != (origin.scheme, origin.netloc):
            raise ModelLoadError(f"{self.fetcher.display} references {safe_url(target.geturl())} on another host")
        # urljoin removes literal dot segments only; a server decodes %2e%2e (and %2f) into them afterwards, so
        # the check is made on the path as the server will read it: decoded once, then normalised
        directory = posixpath.dirname(unquote(origin.path))
        if not _inside_directory(posixpath.normpath(unquote(target.path).replace("\\", "/")), directory):
            raise ReferenceRefused(
                f"{self.fetcher.display} references '{shown(key)}', which lies outside the model's own directory"
            )
        url = urlunsplit((target.scheme, target.netloc, target.path, self.query, ""))
        try:
            data = self.fetcher.fetch(url)
            remember_name(data, key)
            return data
        except ModelLoadError as e:
            # trimesh carries on without an OBJ's missing .mtl or texture: say why the model looks plain
            logger.warning("%s (referenced by %s)", e, self.fetcher.display)
            raise

    def write(self, name: str, data: Any) -> None:
        raise NotImplementedError("models are read-only here")

    def namespaced(self, namespace: str) -> Resolver:
        raise NotImplementedError("namespaces are not used for http models")

    def keys(self) -> Iterator[str]:
        return iter(())


# -- references a model makes (glTF buffers and images, OBJ .mtl and textures): openrr's own containment ------


class ReferenceRefused(ModelLoadError):
    """A model referenced a file outside its own directory (or, locally, outside its account's area)."""


class _Budget:
    """What is left of `max_bytes` for a model and everything it references."""

    def __init__(self, max_bytes: int) -> None:
        self.remaining = max_bytes

    def took(self, data: bytes) -> bytes:
        self.remaining = max(0, self.remaining - len(data))
        return data


def _inside_directory(path: str, directory: str) -> bool:
    """Lexically: `path` (normalised) lies below `directory` ('' or '.' for a relative model path)."""
    if directory in ("", "."):
        return not (path.startswith("/") or path in (".", "..") or path.startswith("../"))
    return path.startswith(directory.rstrip("/") + "/")


def _reference_candidates(key: str, directory: str, display: str) -> list[str]:
    """Paths to try for a reference, joined to the model's directory: as written and decoded once (glTF URIs are
    percent-encoded); for an absolute path from another machine, its file name beside the model (as trimesh's own
    resolver does). ReferenceRefused if a relative spelling climbs out of the directory (`..`, `%2e%2e`)."""
    found: list[str] = []
    for spelling in (key.strip(), unquote(key.strip())):
        joined = posixpath.normpath(posixpath.join(directory, spelling.replace("\\", "/")))
        if _inside_directory(joined, directory):
            found.append(joined)
        elif not spelling.startswith("/"):
            raise ReferenceRefused(f"{display} references '{shown(key)}', which lies outside the model's own directory")
        else:
            found.append(posixpath.join(directory, posixpath.basename(spelling)))
    return [c for i, c in enumerate(found) if c not in found[:i] and _inside_directory(c, directory)]


def _local_name(requested: str) -> str:
    try:
        return PurePosixPath(decode(requested)).name
    except ValueError:
        return ""


class _LocalResolver(Resolver):
    """A local model's references, read through the same LocalFiles as the model: the area is checked for each."""

    def __init__(self, files: LocalFiles, requested: str, display: str, budget: _Budget) -> None:
        self.files = files
        self.display = display
        self.budget = budget
        self.directory = posixpath.dirname(posixpath.normpath(decode(requested)))

    def get(self, key: str) -> bytes:
        refusal: LocalFileRefused | None = None
        for joined in _reference_candidates(key, self.directory, self.display):
            try:
                # quoted: LocalFiles decode what they are given once, and this path is decoded already
                data = self.budget.took(self.files.read(quote(joined), self.budget.remaining))
            except LocalFileRefused as e:
                if e.over_limit:
                    message = f"{self.display} and the files it references are over the limit: {e}"
                    fail_parse(message)
                    raise ReferenceRefused(message) from None
                refusal = e
                continue
            remember_name(data, key)
            return data
        # the refusal reads the same for a file outside the area and a missing one: quoting it reveals nothing
        message = f"{self.display} references '{shown(key)}': {refusal}"
        logger.warning("%s", message)
        raise ReferenceRefused(message)

    def write(self, name: str, data: Any) -> None:
        raise NotImplementedError("models are read-only here")

    def namespaced(self, namespace: str) -> Resolver:
        raise NotImplementedError("namespaces are not used for local models")

    def keys(self) -> Iterator[str]:
        return iter(())


class DirectoryResolver(Resolver):
    """References of a model file on disk (the converter's input), kept inside the model's own directory after
    decoding, `..` and symlinks by openrr itself rather than by whichever trimesh is installed."""

    def __init__(self, source: Path, display: str, max_bytes: int = 2 * 1024**3) -> None:
        # References are joined to the directory as given and opened by that path; `directory` (resolved) is
        # what they must stay in. A conversion worker names its directory /proc/self/cwd/…: the resolved path lies
        # under the data directory, which it cannot reach.
        self.base = os.path.dirname(os.path.abspath(source))
        self.directory = os.path.realpath(self.base)
        self.display = display
        self.budget = _Budget(max_bytes)

    def get(self, key: str) -> bytes:
        inside = False
        for candidate in _reference_candidates(key, self.base, self.display):
            real = os.path.realpath(candidate)
            if not _inside_directory(real, self.directory):
                continue  # a symlink leading out
            inside = True
            try:
                # The candidate, not its resolved path (see __init__); what was opened is checked by its
                # descriptor, so a link swapped in meanwhile cannot lead out.
                fd = os.open(candidate, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
            except OSError:
                continue
            with os.fdopen(fd, "rb") as f:
                if not stat.S_ISREG(os.fstat(fd).st_mode) or not _inside_directory(opened_path(fd), self.directory):
                    continue
                data = f.read(self.budget.remaining + 1)
            if len(data) > self.budget.remaining:
                message = f"{self.display} and the files it references are over the size limit"
                fail_parse(message)
                raise ModelLoadError(message)
            remember_name(data, key)
            return self.budget.took(data)
        if not inside:
            raise ReferenceRefused(f"{self.display} references '{shown(key)}', which lies outside its own directory")
        raise FileNotFoundError(key)

    def write(self, name: str, data: Any) -> None:
        raise NotImplementedError("models are read-only here")

    def namespaced(self, namespace: str) -> Resolver:
        raise NotImplementedError("namespaces are not used here")

    def keys(self) -> Iterator[str]:
        return iter(())


def _parse(
    data: bytes, file_type: str, source: str, display: str, resolver: Resolver, textures: TextureLimits
) -> trimesh.Scene:
    if not data:
        raise ModelLoadError(f"{display} is empty (0 bytes)")
    # magic bytes first: trimesh's own reason for a file of the wrong kind is often a stray IndexError
    if file_type == "glb" and data[:4] != b"glTF":
        raise ModelLoadError(f"cannot parse {display} as GLB: it does not start with the 'glTF' magic bytes")
    if file_type == "ply" and not data.startswith(b"ply"):
        raise ModelLoadError(f"cannot parse {display} as PLY: it does not start with a 'ply' header")
    with texture_limits(textures) as checked:
        try:
            scene = trimesh.load_scene(io.BytesIO(data), file_type=file_type, resolver=resolver)
        except Exception as e:
            failure: Exception | None = e
        else:
            failure = None
    # trimesh drops a texture it cannot open and carries on: a refused one must fail the load, not vanish
    if checked.refused:
        raise ModelLoadError(f"cannot load {display}: {checked.refused[0]}") from None
    if failure is None:
        return scene
    try:
        raise failure
    except Exception as e:
        # checked only after a failure: a self-contained glTF can be hundreds of MB of JSON, not worth
        # parsing twice; and trimesh, lost in broken JSON, may ask the resolver for files that do not exist
        problem = _json_problem(data) if file_type == "gltf" else None
        if problem is None and isinstance(e, ModelLoadError):
            raise  # a referenced file that could not be fetched: the resolver's message says which
        reason = problem or _redact(f"{type(e).__name__}: {e or 'no reason given'}"[:300], source)
        raise ModelLoadError(f"cannot parse {display} as {FORMAT_NAMES[file_type]}: {reason}") from e


def _json_problem(data: bytes) -> str | None:
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        return f"invalid JSON: {e}"
    if not isinstance(doc, dict) or "asset" not in doc:
        return "the JSON has no 'asset' object"
    return None


# -- flattening trimesh's scene into arrays ----------------------------------------------------------


@dataclass
class _Local:
    """A geometry's arrays before its node transform; shared by every node that places the geometry."""

    positions: npt.NDArray[np.float64]
    normals: Float32Array
    colors: Float32Array
    indices: UInt32Array | None
    uvs: Float32Array | None
    texture: UInt8Array | None
    double_sided: bool = True


def _flatten(scene: trimesh.Scene, gltf_sidedness: bool) -> Iterator[MeshData]:
    local: dict[str, _Local | None] = {}
    for node in scene.graph.nodes_geometry:
        matrix, geometry_name = scene.graph[node]
        key = str(geometry_name)
        if key not in local:
            local[key] = _local(scene.geometry.get(key), gltf_sidedness)
        arrays = local[key]
        if arrays is not None:
            yield _place(arrays, np.asarray(matrix, dtype=np.float64))


def _local(geometry: object, gltf_sidedness: bool) -> _Local | None:
    if isinstance(geometry, trimesh.Trimesh) and len(geometry.vertices):
        if len(geometry.faces) == 0:
            return _points(np.asarray(geometry.vertices), _vertex_colors(geometry.visual, len(geometry.vertices)))
        local = _mesh(geometry)
        if gltf_sidedness:
            # trimesh keeps a glTF material as a PBRMaterial; a mesh without one has glTF's default material
            material = getattr(geometry.visual, "material", None)
            local.double_sided = isinstance(material, PBRMaterial) and bool(material.doubleSided)
        return local
    if isinstance(geometry, trimesh.PointCloud) and len(geometry.vertices):
        return _point_cloud(geometry)
    # paths (lines) and empty geometry: nothing a triangle/point renderer draws
    return None


def _mesh(mesh: trimesh.Trimesh) -> _Local:
    positions = np.asarray(mesh.vertices, dtype=np.float64)
    indices = np.asarray(mesh.faces).astype(np.uint32)
    # normals the file carried sit in trimesh's cache; asking `vertex_normals` for missing ones would
    # compute them with a sparse matrix, 10x slower than _vertex_normals
    loaded = mesh._cache.cache.get("vertex_normals") if "vertex_normals" in mesh._cache else None
    if loaded is not None and len(loaded) == len(positions):
        normals = _unit(np.asarray(loaded, dtype=np.float32))
    else:
        normals = _vertex_normals(positions.astype(np.float32), indices)
    uvs: Float32Array | None = None
    texture: UInt8Array | None = None
    visual = mesh.visual
    n = len(positions)
    if isinstance(visual, TextureVisuals):
        base, image = _material(visual.material)
        raw = visual.vertex_attributes.get("color") if visual.vertex_attributes else None
        vertex = _normalise_colors(raw, n) if raw is not None else None
        colors = base if vertex is None else vertex * base
        if visual.uv is not None and len(visual.uv) == n:
            uv = np.asarray(visual.uv, dtype=np.float32)
            # trimesh keeps OBJ's convention (v up from the bottom row); glTF's (v down from row 0) lets a
            # renderer upload `texture` as it is
            uvs = np.column_stack((uv[:, 0], 1.0 - uv[:, 1])).astype(np.float32)
        if image is not None:
            texture = _rgba(image)
    else:
        colors = _vertex_colors(visual, n)
    return _Local(positions, normals, _broadcast(colors, n), indices, uvs, texture)


def _point_cloud(cloud: trimesh.PointCloud) -> _Local:
    positions = np.asarray(cloud.vertices, dtype=np.float64)
    n = len(positions)
    colors = np.asarray(cloud.colors)
    local = _points(positions, _normalise_colors(colors, n) if len(colors) == n else _white())
    normals = _ply_point_normals(cloud.metadata, n)
    if normals is not None:
        local.normals = normals
    return local


def _ply_point_normals(metadata: dict[str, Any], n: int) -> Float32Array | None:
    """trimesh drops a PLY point cloud's normals but keeps the raw PLY elements in its metadata: a structured
    array for binary files, a dict of (n, 1) columns for ASCII ones."""
    raw = metadata.get("_ply_raw")
    data = raw.get("vertex", {}).get("data") if isinstance(raw, dict) else None
    if isinstance(data, np.ndarray):
        names = set(data.dtype.names or ())
    elif isinstance(data, dict):
        names = set(data)
    else:
        return None
    if not {"nx", "ny", "nz"} <= names:
        return None
    columns = [np.asarray(data[axis], dtype=np.float32).reshape(-1) for axis in ("nx", "ny", "nz")]
    if any(len(column) != n for column in columns):
        return None
    return _unit(np.column_stack(columns), fallback=None)


def _points(positions: npt.NDArray[np.float64], colors: Float32Array) -> _Local:
    n = len(positions)
    normals = np.zeros((n, 3), dtype=np.float32)
    return _Local(positions.astype(np.float64), normals, _broadcast(colors, n), None, None, None)


def _vertex_colors(visual: object, n: int) -> Float32Array:
    if isinstance(visual, ColorVisuals) and visual.kind is not None:
        # face colours come back averaged onto the vertices
        return _normalise_colors(visual.vertex_colors, n)
    if isinstance(visual, TextureVisuals):
        base, _ = _material(visual.material)
        return base
    return _white()


def _material(material: object) -> tuple[Float32Array, Image.Image | None]:
    """Base colour factor (RGBA 0..1) and base-colour image of a trimesh material."""
    if isinstance(material, PBRMaterial):
        factor = material.baseColorFactor
        base = _white() if factor is None else _normalise_colors(np.asarray(factor).reshape(1, -1), 1)
        return base, material.baseColorTexture
    if isinstance(material, SimpleMaterial):
        image = cast("Image.Image | None", getattr(material, "image", None))
        if image is not None and _is_placeholder(image):
            image = None
        diffuse = getattr(material, "diffuse", None)
        if diffuse is None or np.array_equal(diffuse, DEFAULT_COLOR):
            # trimesh puts its 40% grey in place of a missing Kd, which would darken a map_Kd texture
            # (a material that really says Kd 0.4 is shown brighter than it asks)
            return _white(), image
        return _normalise_colors(np.asarray(diffuse).reshape(1, -1), 1), image
    return _white(), None


def _is_placeholder(image: Image.Image) -> bool:
    """trimesh's stand-in when uvs come without a material (an OBJ whose .mtl is missing): 2×2 grey."""
    if image.size != (2, 2):
        return False
    return bool(np.all(np.asarray(image.convert("RGBA")) == PLACEHOLDER_TEXEL))


def _normalise_colors(raw: Any, n: int) -> Float32Array:
    """Colours of any integer or float encoding, 3 or 4 channels → (n, 4) float32 in 0..1."""
    colors = np.asarray(raw)
    if colors.ndim != 2 or colors.shape[1] not in (3, 4) or len(colors) not in (1, n):
        return _white()
    if np.issubdtype(colors.dtype, np.integer):
        # glTF's normalised integer colours: uint8 or uint16, full scale = the type's maximum
        out = colors.astype(np.float32) / np.float32(np.iinfo(colors.dtype).max)
    else:
        out = np.clip(colors.astype(np.float32), 0.0, 1.0)
    if out.shape[1] == 3:
        out = np.column_stack((out, np.ones(len(out), dtype=np.float32)))
    return out


def _white() -> Float32Array:
    return np.ones((1, 4), dtype=np.float32)


def _broadcast(colors: Float32Array, n: int) -> Float32Array:
    if len(colors) == n:
        return np.ascontiguousarray(colors, dtype=np.float32)
    return np.ascontiguousarray(np.broadcast_to(colors[:1], (n, 4)), dtype=np.float32)


def _rgba(image: Image.Image) -> UInt8Array:
    if image.mode != "RGBA":
        image = image.convert("RGBA")
    return np.asarray(image, dtype=np.uint8).copy()


def _vertex_normals(positions: Float32Array, indices: UInt32Array) -> Float32Array:
    """Area-weighted vertex normals; bincount is what makes 1M triangles take ~0.1 s, not trimesh's 1 s."""
    corners = indices.astype(np.intp)
    a, b, c = (np.take(positions, corners[:, k], axis=0) for k in range(3))  # np.take: faster than a[idx]
    e1, e2 = b - a, c - a
    face = np.column_stack(
        (
            e1[:, 1] * e2[:, 2] - e1[:, 2] * e2[:, 1],
            e1[:, 2] * e2[:, 0] - e1[:, 0] * e2[:, 2],
            e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0],
        )
    )
    n = len(positions)
    every_corner = corners.T.reshape(-1)  # all first corners, then all second, then all third
    summed = np.empty((n, 3), dtype=np.float64)
    for axis in range(3):
        summed[:, axis] = np.bincount(every_corner, weights=np.tile(face[:, axis], 3), minlength=n)
    return _unit(summed.astype(np.float32))


def _unit(vectors: Float32Array, fallback: tuple[float, float, float] | None = (0.0, 0.0, 1.0)) -> Float32Array:
    """Normalised rows; zero rows (unused vertices, degenerate faces) get `fallback`, or stay zero."""
    length = np.linalg.norm(vectors, axis=1)
    zero = length == 0
    out = vectors / np.where(zero, 1.0, length)[:, None].astype(np.float32)
    if fallback is not None and zero.any():
        out[zero] = fallback
    return out.astype(np.float32, copy=False)


def _place(local: _Local, matrix: npt.NDArray[np.float64]) -> MeshData:
    if np.array_equal(matrix, np.eye(4)):
        positions = local.positions.astype(np.float32)
        normals, indices = local.normals, local.indices
    else:
        linear = matrix[:3, :3]
        positions = (local.positions @ linear.T + matrix[:3, 3]).astype(np.float32)
        normals = local.normals
        if np.any(normals):
            normal_matrix = np.linalg.inv(linear).T.astype(np.float32)
            normals = _unit(normals @ normal_matrix.T, fallback=None if local.indices is None else (0.0, 0.0, 1.0))
        indices = local.indices
        if indices is not None and np.linalg.det(linear) < 0:
            # a mirroring transform turns counter-clockwise triangles clockwise: swap two corners back
            indices = np.ascontiguousarray(indices[:, [0, 2, 1]])
    return MeshData(positions, normals, local.colors, indices, local.uvs, local.texture, local.double_sided)


def _model(name: str, meshes: list[MeshData]) -> ModelData:
    lows = np.array([m.positions.min(axis=0) for m in meshes])
    highs = np.array([m.positions.max(axis=0) for m in meshes])
    return ModelData(
        name=name,
        meshes=meshes,
        bounds_min=lows.min(axis=0).astype(np.float32),
        bounds_max=highs.max(axis=0).astype(np.float32),
        triangles=sum(len(m.indices) for m in meshes if m.indices is not None),
        points=sum(len(m.positions) for m in meshes if m.indices is None),
    )
