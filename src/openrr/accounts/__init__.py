"""Accounts, their keys (stored hashed) and the STS that swaps a key for a signed token."""
