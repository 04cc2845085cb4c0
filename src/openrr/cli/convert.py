"""`openrr convert [upload|start|status|wait|cancel]`: what ARR's Scripts/Conversion.ps1 did, against any ARR API.

With no action: upload, start, wait, then print the output asset's read-only SAS URL, ready for a session's
loadModel. Settings come from arrconfig.json (accountSettings, renderingSessionSettings.remoteRenderingDomain,
assetConversionSettings), the environment and flags (flags win).

Exit codes: 0 success (when waiting: the conversion Succeeded), 1 the service or storage said no (HTTP error,
conversion Failed or Cancelled, wait timed out, unreachable), 2 missing or malformed settings, 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
import uuid
from typing import Any

from openrr.cli.toolkit import (
    StatusLine,
    UploadProgress,
    WaitTimeout,
    add_connection_flags,
    connection_from,
    human_bytes,
    poll_until_terminal,
    positive,
    print_fields,
    print_json,
    run_command,
    verify_for,
)
from openrr.client.arrconfig import (
    ConfigError,
    Connection,
    find_config,
)
from openrr.client.conversion_rest import ConversionClient
from openrr.client.convert_settings import (
    ENV_CONNECTION_STRING,
    ENV_STORAGE_ACCOUNT,
    ENV_STORAGE_KEY,
    FIELDS,
    SECTION,
    ConversionPlan,
    StorageFailure,
    flag_dest,
    resolve_plan,
)
from openrr.client.rest import ArrConnectionError, ArrHttpError

ACTIONS = ("upload", "start", "status", "wait", "cancel")
TERMINAL = ("succeeded", "failed", "cancelled")
DEFAULT_POLL_S = 2.0
_PROG = "openrr convert"


def _add_common(p: argparse.ArgumentParser, suppress: bool) -> None:
    """The flags every action takes. Given twice (before and after the action), so the action's copy must not
    overwrite what was parsed before it: there its defaults are SUPPRESS."""
    none: Any = argparse.SUPPRESS if suppress else None
    false: Any = argparse.SUPPRESS if suppress else False
    add_connection_flags(p, none)

    storage = p.add_argument_group(
        "storage", f"{SECTION} of arrconfig.json; the storage key comes by flag or environment variable"
    )
    for key, flag in FIELDS.items():
        helptext = f"{SECTION}.{key}"
        if key == "resourceGroup":
            helptext += " (accepted for Conversion.ps1's sake; openrr does not use it)"
        elif key == "storageAccountName":
            helptext += f" (env {ENV_STORAGE_ACCOUNT})"
        storage.add_argument(flag, dest=flag_dest(key), metavar="VALUE", default=none, help=helptext)
    storage.add_argument(
        "--storage-connection-string", metavar="TEXT", default=none,
        help=f"connection string with AccountName and AccountKey ('-': stdin; env {ENV_CONNECTION_STRING})",
    )  # fmt: skip
    storage.add_argument(
        "--storage-account-key", metavar="KEY", default=none,
        help=f"the storage account's key ('-': stdin; env {ENV_STORAGE_KEY})",
    )  # fmt: skip
    storage.add_argument(
        "--blob-endpoint", metavar="URL", default=none,
        help="blob service endpoint (default https://<storageAccountName>.blob.core.windows.net, or the "
        "connection string's BlobEndpoint), e.g. Azurite's http://127.0.0.1:10000/devstoreaccount1",
    )  # fmt: skip
    mode = storage.add_mutually_exclusive_group()
    mode.add_argument(
        "--use-container-sas", action="store_true", default=false,
        help="give the service container SAS tokens signed with the storage key (the default when there is a key)",
    )  # fmt: skip
    mode.add_argument(
        "--use-linked-storage", "--use-connected-storage-account", dest="use_linked_storage", action="store_true",
        default=false, help="no SAS: the storage account is linked to the account (openrr account link-storage)",
    )  # fmt: skip
    p.add_argument("--json", action="store_true", default=false, help="print the service's JSON instead of a summary")


def _add_wait_flags(p: argparse.ArgumentParser, suppress: bool) -> None:
    none: Any = argparse.SUPPRESS if suppress else None
    p.add_argument(
        "--poll-interval", type=positive, metavar="S", default=none,
        help=f"seconds between polls (default {DEFAULT_POLL_S:g}; Conversion.ps1 slept 10)",
    )  # fmt: skip
    p.add_argument("--timeout", type=positive, metavar="S", default=none, help="give up waiting after S seconds")


def _add_id(p: argparse.ArgumentParser, suppress: bool, helptext: str, positional: bool) -> None:
    none: Any = argparse.SUPPRESS if suppress else None
    if positional:
        p.add_argument("conversion_id", nargs="?", metavar="ID", default=none, help=helptext)
    p.add_argument("--id", dest="id_flag", metavar="ID", default=none, help=helptext)


def add_arguments(convert: argparse.ArgumentParser) -> None:
    convert.description = (
        "Upload a model to blob storage, convert it and wait for the result, or do one of those steps. "
        "With no action: upload, start, wait, and print the output asset's SAS URL."
    )
    convert.epilog = __doc__.split("\n\n", 1)[1].strip() if __doc__ else None
    _add_common(convert, suppress=False)
    _add_id(convert, False, "conversion ID of the default flow (default Sample-Conversion-<guid>)", positional=False)
    _add_wait_flags(convert, False)
    actions = convert.add_subparsers(dest="action", metavar="{upload,start,status,wait,cancel}")
    common = argparse.ArgumentParser(add_help=False)
    _add_common(common, suppress=True)

    actions.add_parser("upload", parents=[common], help="upload localAssetDirectoryPath to the input container")
    start = actions.add_parser("start", parents=[common], help="create a conversion of the uploaded model")
    _add_id(start, True, "conversion ID (default Sample-Conversion-<guid>)", positional=False)
    start.add_argument("--wait", action="store_true", default=argparse.SUPPRESS, help="then wait for it to end")
    _add_wait_flags(start, True)
    status = actions.add_parser("status", parents=[common], help="show a conversion")
    _add_id(status, True, "conversion ID", positional=True)
    wait = actions.add_parser("wait", parents=[common], help="wait for a conversion to end, showing its progress")
    _add_id(wait, True, "conversion ID", positional=True)
    _add_wait_flags(wait, True)
    cancel = actions.add_parser("cancel", parents=[common], help="cancel a conversion (an openrr extension)")
    _add_id(cancel, True, "conversion ID", positional=True)


def run(args: argparse.Namespace) -> int:
    return run_command(_PROG, lambda: _run(args), (ArrHttpError, ArrConnectionError, StorageFailure))


def _run(args: argparse.Namespace) -> int:
    action = getattr(args, "action", None) or "run"
    config = find_config(getattr(args, "config", None))
    upload = action in ("upload", "run")
    start = action in ("start", "run")
    talks = action != "upload"
    problems: list[str] = []
    plan: ConversionPlan | None = None
    try:
        # wait and status sign the output's SAS URL when a storage key is at hand; none is required.
        plan = resolve_plan(args, os.environ, config, upload=upload, start=start, sign=action in ("wait", "status"))
    except ConfigError as e:
        problems += e.problems
    connection = None
    if talks:
        try:
            connection = connection_from(args, config)
        except ConfigError as e:
            problems = e.problems + problems
    conversion_id = ""
    if action in ("start", "run"):
        conversion_id = getattr(args, "id_flag", None) or f"Sample-Conversion-{uuid.uuid4()}"
    elif action in ("status", "wait", "cancel"):
        conversion_id = getattr(args, "conversion_id", None) or getattr(args, "id_flag", None) or ""
        if not conversion_id:
            conversion_id = _ask_id(problems)
    if problems or plan is None:
        raise ConfigError(problems)

    return _act(args, action, plan, connection, conversion_id)


def _ask_id(problems: list[str]) -> str:
    # Conversion.ps1 prompted for a missing -Id; without a terminal there is no one to ask.
    if sys.stdin.isatty() and not problems:
        answer = input("Please enter Conversion Id: ").strip()
        if answer:
            return answer
    problems.append("no conversion ID given - pass it as an argument (or --id ID)")
    return ""


def _act(
    args: argparse.Namespace,
    action: str,
    plan: ConversionPlan,
    connection: Connection | None,
    conversion_id: str,
) -> int:
    as_json = bool(getattr(args, "json", False))
    if action in ("upload", "run"):
        _upload(plan, as_json and action == "upload")
        if action == "upload":
            return 0
    assert connection is not None
    verify = verify_for(connection)
    client = ConversionClient(
        endpoint=connection.endpoint,
        sts_endpoint=connection.sts_endpoint,
        account_id=connection.account_id,
        account_key=connection.account_key,
        verify=verify,
    )
    with client:
        if action in ("start", "run"):
            doc = _start(client, plan, conversion_id)
            if action == "start" and not getattr(args, "wait", False):
                if as_json:
                    print_json(doc)
                else:
                    print(f"Started conversion '{conversion_id}'. Follow it with: {_PROG} wait {conversion_id}")
                    _print_conversion(doc)
                return 0
            if action == "run" and not as_json:
                print(f"Started conversion '{conversion_id}'.")
            return _wait_and_report(client, args, plan, conversion_id)
        if action == "wait":
            return _wait_and_report(client, args, plan, conversion_id)
        if action == "status":
            doc = client.get_conversion(conversion_id)
            if as_json:
                print_json(_with_sas_url(doc, plan))
            else:
                print("Conversion Status:")
                _print_conversion(doc)
                _print_sas_url(doc, plan)
            return 0
        if action == "cancel":
            doc = client.cancel_conversion(conversion_id)
            if as_json:
                print_json(doc)
            else:
                cancelled = str(doc.get("status", "")).lower() == "cancelled"
                print(f"Cancelled conversion '{conversion_id}'." if cancelled else "The conversion had already ended.")
                _print_conversion(doc)
            return 0
    return 2


# --- actions -------------------------------------------------------------------------------------


def _upload(plan: ConversionPlan, as_json: bool) -> None:
    from openrr.cli.convert_storage import ensure_container, upload_files

    assert plan.storage is not None and plan.input_container is not None
    files = plan.local_files()
    if not files:
        raise ConfigError([f"{SECTION}.localAssetDirectoryPath: {plan.local_path} holds no files"])
    if ensure_container(plan.storage, plan.input_container):
        print(f"Created the container {plan.storage.container_uri(plan.input_container)}", file=sys.stderr)
    done = upload_files(plan.storage, plan.input_container, files, UploadProgress(sys.stderr))
    if as_json:
        print_json({"containerUri": done.container_uri, "blobs": done.blobs, "bytes": done.bytes})
    else:
        where = f"{done.container_uri}/{plan.input_folder}"
        print(f"Uploaded {len(done.blobs)} file(s), {human_bytes(done.bytes)}, to {where}")


def _start(client: ConversionClient, plan: ConversionPlan, conversion_id: str) -> dict[str, Any]:
    from openrr.cli.convert_storage import ensure_container, input_sas, output_sas

    storage = plan.storage
    assert storage is not None and plan.input_container and plan.output_container and plan.input_asset_path
    inp: dict[str, Any] = {
        "storageContainerUri": storage.container_uri(plan.input_container),
        "blobPrefix": plan.input_folder,
        "relativeInputAssetPath": plan.input_asset_path,
    }
    out: dict[str, Any] = {
        "storageContainerUri": storage.container_uri(plan.output_container),
        "blobPrefix": plan.output_folder,
        "outputAssetFilename": plan.output_asset_filename,
    }
    if storage.key is not None and ensure_container(storage, plan.output_container):
        print(f"Created the container {storage.container_uri(plan.output_container)}", file=sys.stderr)
    if plan.use_sas:
        inp["storageContainerReadListSas"] = input_sas(storage, plan.input_container)
        out["storageContainerWriteSas"] = output_sas(storage, plan.output_container)
    mode = "container SAS tokens" if plan.use_sas else "linked storage"
    what = f"{plan.input_folder}{plan.input_asset_path}"
    print(f"Starting conversion '{conversion_id}' of {what} ({mode})", file=sys.stderr)
    return client.create_conversion(conversion_id, {"inputLocation": inp, "outputLocation": out})


def _status_text(doc: dict[str, Any]) -> str:
    status = str(doc.get("status", "?"))
    progress = doc.get("progress")
    if status.lower() == "running" and isinstance(progress, int | float):
        return f"{status} {progress * 100:.0f}%"
    return status


def _wait_and_report(client: ConversionClient, args: argparse.Namespace, plan: ConversionPlan, cid: str) -> int:
    as_json = bool(getattr(args, "json", False))
    interval = getattr(args, "poll_interval", None) or DEFAULT_POLL_S
    try:
        doc, waited = poll_until_terminal(
            lambda: client.get_conversion(cid),
            TERMINAL,
            StatusLine(sys.stderr, f"Conversion '{cid}'"),
            lambda _: interval,
            getattr(args, "timeout", None),
            describe=_status_text,
        )
    except WaitTimeout as e:
        print(
            f"{_PROG}: timed out after {e.waited_s:.0f} s: conversion '{cid}' is still {e.last.get('status')}. "
            f"It goes on; follow it with: {_PROG} wait {cid}, or stop it with: {_PROG} cancel {cid}",
            file=sys.stderr,
        )
        if as_json:
            print_json(e.last)
        return 1
    except KeyboardInterrupt:
        print(
            f"\n{_PROG}: stopped waiting; the conversion goes on. Follow it with: {_PROG} wait {cid}, "
            f"or stop it with: {_PROG} cancel {cid}",
            file=sys.stderr,
        )
        return 130

    status = str(doc.get("status", "")).lower()
    succeeded = status == "succeeded"
    if not succeeded:
        error = doc.get("error") or {}
        print(
            f"{_PROG}: conversion '{cid}' {doc.get('status')}: {error.get('code', '?')}: {error.get('message', '')}",
            file=sys.stderr,
        )
    if as_json:
        print_json(_with_sas_url(doc, plan))
        return 0 if succeeded else 1
    print(f"Conversion {status}. Time elapsed: {waited:.0f} s")
    _print_conversion(doc)
    if succeeded:
        _print_sas_url(doc, plan)
    return 0 if succeeded else 1


# --- output --------------------------------------------------------------------------------------


def _sas_url(doc: dict[str, Any], plan: ConversionPlan) -> str | None:
    if plan.storage is None or str(doc.get("status", "")).lower() != "succeeded":
        return None
    from openrr.cli.convert_storage import asset_sas_url

    return asset_sas_url(plan.storage, doc)


def _with_sas_url(doc: dict[str, Any], plan: ConversionPlan) -> dict[str, Any]:
    url = _sas_url(doc, plan)
    return {**doc, "outputAssetSasUrl": url} if url else doc


def _print_sas_url(doc: dict[str, Any], plan: ConversionPlan) -> None:
    url = _sas_url(doc, plan)
    if url is None:
        if str(doc.get("status", "")).lower() == "succeeded":
            print(
                "No storage key for the output's storage account, so no SAS URL: a session of an account linked to "
                f"it loads the outputAssetUri as it is; or pass --storage-connection-string (or set "
                f"{ENV_CONNECTION_STRING}) to get one.",
                file=sys.stderr,
            )
        return
    print("Output asset SAS URL (read-only, valid 24 h; paste it into a session's loadModel):")
    print(url)


# (label, path in the conversion document); absent values are left out.
_FIELDS = (
    ("conversionId", ("id",)),
    ("status", ("status",)),
    ("creationTime", ("creationTime",)),
    ("inputContainer", ("settings", "inputLocation", "storageContainerUri")),
    ("inputBlobPrefix", ("settings", "inputLocation", "blobPrefix")),
    ("inputAssetPath", ("settings", "inputLocation", "relativeInputAssetPath")),
    ("outputContainer", ("settings", "outputLocation", "storageContainerUri")),
    ("outputBlobPrefix", ("settings", "outputLocation", "blobPrefix")),
    ("outputAssetFileName", ("settings", "outputLocation", "outputAssetFilename")),
    ("outputAssetUri", ("output", "outputAssetUri")),
    ("error", ("error",)),
)
_WIDTH = max(len(label) for label, _ in _FIELDS) + 1


def _lookup(doc: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        doc = doc.get(key) if isinstance(doc, dict) else None
    return doc


def _print_conversion(doc: dict[str, Any]) -> None:
    rows = ((label, _lookup(doc, path)) for label, path in _FIELDS)
    print_fields(
        ((label, _status_text(doc) if label == "status" else value) for label, value in rows if value is not None),
        _WIDTH,
    )
