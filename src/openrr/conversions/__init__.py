"""Conversions: ARR's asset conversion API, its jobs, and the worker processes that run them."""
