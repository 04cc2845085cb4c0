"""The one base of every exception the client library raises, so a caller can catch them all at once."""

from __future__ import annotations


class ClientError(Exception):
    """Anything the client library raises on purpose: the service or a render server refused, could not be reached,
    or the client's settings are wrong. Subclasses: ArrHttpError, ArrConnectionError (rest.py), SessionError
    (render_session.py), ConfigError (arrconfig.py), StorageFailure (convert_settings.py)."""
