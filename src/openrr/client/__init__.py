"""Clients of an openrr service: the session CLI now, the render-session client library later."""
