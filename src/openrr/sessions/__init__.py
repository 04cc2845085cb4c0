"""Rendering sessions: one state machine, one service, a reconciler, and the two API generations."""
