"""Loading a model into a render session: a local path or an http(s) URL (SAS URLs, and plain blob URLs of linked
storage) → `ModelData`.

storage/ fetches the bytes (storage/fetch.py, storage/area_files.py), model/ parses them (gltf_import.py for glTF and
GLB, trimesh_import.py for OBJ, PLY and STL: `model_of_bytes` picks) or reads
a converted `.arrAsset` (arrasset.py, whose arrays are views into the fetched bytes); this module joins the two:
it signs blob URLs for linked storage, resolves the files a model references through the same fetcher, under the
same containment rules, and turns every failure into a `ModelLoadError` whose message never repeats a URL's query
string.
"""

from __future__ import annotations

import logging
import posixpath
import time
from collections.abc import Callable
from pathlib import PurePosixPath
from urllib.parse import quote, unquote, urljoin, urlsplit, urlunsplit

from openrr.model.arrasset import AssetFormatError, read_asset
from openrr.model.mesh import ModelData, ModelLoadError
from openrr.model.references import Budget, ReadOnlyResolver, ReferenceRefused, inside_directory, reference_candidates
from openrr.model.texture_guard import DEFAULT_TEXTURES, TextureLimits, fail_parse, remember_name
from openrr.model.trimesh_import import file_type, model_of_bytes
from openrr.protocol.redaction import display_url
from openrr.storage.account_area import decode
from openrr.storage.area_files import LOCAL_FILES_OFF, LocalFileRefused, LocalFiles
from openrr.storage.fetch import DEFAULT_HTTP, FetchError, HttpFetcher, HttpOptions, scrub
from openrr.storage.session_access import SESSION_STORAGE, SessionStorage
from openrr.util.paths import shown
from openrr.util.progress import MonotonicProgress, Progress

logger = logging.getLogger(__name__)

ASSET_SUFFIX = ".arrasset"  # compared lower-case: ARR writes `.arrAsset`
# share of the progress bar given to fetching the bytes; parsing and flattening take the rest
FETCH_SHARE = 0.9


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
    try:
        return _load(source, progress, timeout_s, max_bytes, storage, http, local_files, textures)
    except FetchError as e:
        # storage's refusals are this load's failure, message and all
        raise ModelLoadError(str(e)) from None


def _load(
    source: str,
    progress: Progress | None,
    timeout_s: float,
    max_bytes: int,
    storage: SessionStorage,
    http: HttpOptions,
    local_files: LocalFiles | None,
    textures: TextureLimits,
) -> ModelData:
    report = MonotonicProgress(progress)
    report(0.0)
    started = time.perf_counter()
    parts = urlsplit(source)
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        display = display_url(source)
        name = PurePosixPath(unquote(parts.path)).name
        asset = _is_asset(name)
        kind = "" if asset else file_type(name, display)
        fetcher = HttpFetcher(
            storage.authorize(source), display, timeout_s, max_bytes, storage.denied_hint(source), http
        )
        with fetcher:
            data = fetcher.fetch_main(lambda f: report(f * FETCH_SHARE))
            if asset:
                return _asset(data, name, display, started, report)
            model = model_of_bytes(data, kind, name, display, _HttpResolver(fetcher), textures, _scrubbing(source))
    else:
        if local_files is None:
            raise ModelLoadError(LOCAL_FILES_OFF)
        display = local_files.display(source)
        name = _local_name(source)
        asset = _is_asset(name)
        kind = "" if asset else file_type(name, display)
        budget = Budget(max_bytes)
        data = budget.took(local_files.read(source, budget.remaining))
        report(FETCH_SHARE)
        if asset:
            return _asset(data, name, display, started, report)
        references = _LocalResolver(local_files, source, display, budget)
        model = model_of_bytes(data, kind, name, display, references, textures, _scrubbing(source))
    return _loaded(model, "", display, started, report)


def _is_asset(name: str) -> bool:
    return PurePosixPath(name).suffix.lower() == ASSET_SUFFIX


def _asset(data: bytes, name: str, display: str, started: float, report: MonotonicProgress) -> ModelData:
    if not data:
        raise ModelLoadError(f"{display} is empty (0 bytes)")
    try:
        model = read_asset(data, name)
    except AssetFormatError as e:
        raise ModelLoadError(f"cannot read {display} as an .arrAsset: {e}") from None
    return _loaded(model, "asset ", display, started, report)


def _loaded(model: ModelData, what: str, display: str, started: float, report: MonotonicProgress) -> ModelData:
    """The end of every load: progress at 100 % and one log line saying what was loaded and how fast."""
    report(1.0)
    logger.info(
        "loaded %s%s: %d meshes, %d triangles, %d points in %.3f s",
        what,
        display,
        len(model.meshes),
        model.triangles,
        model.points,
        time.perf_counter() - started,
    )
    return model


def _scrubbing(source: str) -> Callable[[str], str]:
    """How a parser's message about `source` is shown: httpx and parsers rarely quote URLs, but a signature must not
    leak when they do."""
    return lambda text: scrub(text, source)


class _HttpResolver(ReadOnlyResolver):
    """Fetches files a model references (glTF buffers and images, OBJ's .mtl and textures) beside its URL.

    The model URL's query string goes along: a container SAS token signs every blob in the container.
    References to another host are refused, so a model cannot make the server fetch arbitrary URLs.
    """

    def __init__(self, fetcher: HttpFetcher) -> None:
        self.fetcher = fetcher
        parts = urlsplit(fetcher.url)
        self.base = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
        self.query = parts.query

    def get(self, key: str) -> bytes:
        target = urlsplit(urljoin(self.base, key))
        origin = urlsplit(self.base)
        if (target.scheme, target.netloc) != (origin.scheme, origin.netloc):
            raise ModelLoadError(f"{self.fetcher.display} references {display_url(target.geturl())} on another host")
        # urljoin removes literal dot segments only; a server decodes %2e%2e (and %2f) into them afterwards, so
        # the check is made on the path as the server will read it: decoded once, then normalised
        directory = posixpath.dirname(unquote(origin.path))
        if not inside_directory(posixpath.normpath(unquote(target.path).replace("\\", "/")), directory):
            raise ReferenceRefused(
                f"{self.fetcher.display} references '{shown(key)}', which lies outside the model's own directory"
            )
        url = urlunsplit((target.scheme, target.netloc, target.path, self.query, ""))
        try:
            data = self.fetcher.fetch(url)
        except FetchError as e:
            # trimesh carries on without an OBJ's missing .mtl or texture: say why the model looks plain
            logger.warning("%s (referenced by %s)", e, self.fetcher.display)
            raise ModelLoadError(str(e)) from None
        remember_name(data, key)
        return data


def _local_name(requested: str) -> str:
    try:
        return PurePosixPath(decode(requested)).name
    except ValueError:
        return ""


class _LocalResolver(ReadOnlyResolver):
    """A local model's references, read through the same LocalFiles as the model: the area is checked for each."""

    def __init__(self, files: LocalFiles, requested: str, display: str, budget: Budget) -> None:
        self.files = files
        self.display = display
        self.budget = budget
        self.directory = posixpath.dirname(posixpath.normpath(decode(requested)))

    def get(self, key: str) -> bytes:
        refusal: LocalFileRefused | None = None
        for joined in reference_candidates(key, self.directory, self.display):
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
