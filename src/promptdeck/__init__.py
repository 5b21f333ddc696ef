"""promptdeck: a self-hosted prompt deployment server."""

__version__ = "0.1.0"
