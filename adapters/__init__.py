"""Thin adapters that serve an `SSEStream` from web frameworks (installed as `ssekit.adapters`)."""
