"""Where the ASGI app keeps the control plane's service objects, for the API faces to find.

Each face declares, as a Protocol, just the services it uses: the faces then need not import the module that wires
them all (`openrr.services`), which imports the faces' own packages back."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request


def attach_services(app: FastAPI, services: object) -> None:
    app.state.services = services


def services_in(request: Request) -> Any:
    return request.app.state.services
