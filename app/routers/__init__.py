"""Thin HTTP layer: parse, authorize, call one service, shape the response."""
