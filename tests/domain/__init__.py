"""Unit tests for the pure domain rules."""
