"""Building the adapter for a stored connection (its decrypted credentials never leave this call)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from apps.providers.base import BillingProvider, ProviderError

if TYPE_CHECKING:
    from apps.billing.models import ProviderConnection


def provider_for(connection: ProviderConnection) -> BillingProvider:
    credentials = connection.get_credentials()
    if connection.provider == "stripe":
        from apps.providers.stripe import StripeProvider

        return StripeProvider(
            api_key=credentials.get("api_key", ""),
            base_url=connection.base_url or None,
            allow_writes=connection.allow_writes,
        )
    if connection.provider == "chargebee":
        from apps.providers.chargebee import ChargebeeProvider

        return ChargebeeProvider(
            api_key=credentials.get("api_key", ""),
            site=connection.site,
            base_url=connection.base_url or None,
            allow_writes=connection.allow_writes,
        )
    raise ProviderError(f"unknown provider {connection.provider!r}")
