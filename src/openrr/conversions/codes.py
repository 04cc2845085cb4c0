"""Error codes a conversion ends with. ARR's own where it had one (see docs/conversions.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from openrr.storage.errors import StorageError

INPUT_ACCESS_DENIED = "InputContainerAccessDenied"
INPUT_ACCESS_DENIED_MESSAGE = (
    "Access to the input blob container was denied. Invalid access rights or invalid shared access signature."
)
# ARR's code for an output it could not write is not on record; this mirrors the input's.
OUTPUT_ACCESS_DENIED = "OutputContainerAccessDenied"
OUTPUT_ACCESS_DENIED_MESSAGE = (
    "Access to the output blob container was denied. Invalid access rights or invalid shared access signature."
)
# ARR's answer to an input asset that is not in the container, as the released SDK's tests expect it
# (test_failed_conversion_missing_asset: this code, and this sentence within the message).
INPUT_CONTAINER_ERROR = "InputContainerError"
MISSING_ASSET_MESSAGE = (
    "Could not find the asset file in the storage account. Please make sure all paths and names are correct and "
    "the file is uploaded to storage."
)
PROCESS_FAILED = "ConversionProcessFailed"
INVALID_INPUT_MESSAGE = "Invalid input provided."
INTERNAL = "InternalServerError"
CANCELLED = "ConversionCancelled"
LINK_MISSING = "DelegatedResourceAccessError"
LINK_MISSING_MESSAGE = (
    "Error accessing connected storage account due to insufficient permissions. Check if the Mixed Reality "
    "resource has correct permissions assigned. Documentation on how to link Remote Rendering Accounts to storage "
    "can be found here: https://docs.microsoft.com/azure/remote-rendering/how-tos/create-an-account"
    "#link-storage-accounts."
)


def access_message(arr_sentence: str, e: StorageError) -> str:
    """ARR's sentence where access was refused; a missing or unreachable container is said as such."""
    if e.reason == "denied":
        return f"{arr_sentence} {capital(e.message)}"
    return capital(e.message)


def capital(text: str) -> str:
    return text[:1].upper() + text[1:]
