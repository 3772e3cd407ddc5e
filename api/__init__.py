"""The HTTP layer: an OpenAI-compatible API over `constrained`'s engine."""

from api.app import create_app

__all__ = ["create_app"]
