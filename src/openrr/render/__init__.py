"""The render server: one process per session, with a handshake port and an inspector port."""
