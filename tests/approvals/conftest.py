"""The Stripe sandbox fixtures and an over-billed world, for every test of this package."""

from tests.approvals.world import stripe_sandbox, stripe_seeded, world

__all__ = ["stripe_sandbox", "stripe_seeded", "world"]
