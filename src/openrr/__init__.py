"""Open Remote Rendering: a self-hosted service that speaks the Azure Remote Rendering REST API."""

__version__ = "0.1.0"
