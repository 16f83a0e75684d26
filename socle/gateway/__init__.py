"""The HTTP gateway: ``create_app(settings)`` builds the OpenAI-compatible ASGI app."""

from socle.gateway.app import create_app

__all__ = ["create_app"]
