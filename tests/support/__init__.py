"""Helpers the tests share: real PostgreSQL, a live server on loopback."""
