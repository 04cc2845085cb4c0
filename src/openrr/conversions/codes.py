"""Error codes a conversion ends with. ARR's own where it had one (see docs/conversions.md)."""

from __future__ import annotations

INPUT_ACCESS_DENIED = "InputContainerAccessDenied"
INPUT_ACCESS_DENIED_MESSAGE = (
    "Access to the input blob container was denied. Invalid access rights or invalid shared access signature."
)
# ARR's code for an output it could not write is not on record; this mirrors the input's.
OUTPUT_ACCESS_DENIED = "OutputContainerAccessDenied"
OUTPUT_ACCESS_DENIED_MESSAGE = (
    "Access to the output blob container was denied. Invalid access rights or invalid shared access signature."
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
