"""A Stripe-compatible sandbox server the official SDK talks to over real HTTP (see ``server``)."""

from .server import DEFAULT_API_KEY, DEFAULT_WEBHOOK_SECRET, Sandbox, StripeSandboxServer, running_sandbox
from .state import API_VERSION, StripeState

__all__ = [
    "API_VERSION",
    "DEFAULT_API_KEY",
    "DEFAULT_WEBHOOK_SECRET",
    "Sandbox",
    "StripeSandboxServer",
    "StripeState",
    "running_sandbox",
]
