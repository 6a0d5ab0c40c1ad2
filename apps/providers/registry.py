"""Building the adapter for a stored connection (its decrypted credentials never leave this call)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from apps.providers.base import BillingProvider, ProviderError

if TYPE_CHECKING:
    from apps.billing.models import ProviderConnection


def item_price_map(connection: ProviderConnection) -> dict[str, str]:
    """The connection's meter → Chargebee item price map (kept in its usage-push settings)."""
    from apps.billing.models import UsagePushSettings

    mapping = (
        UsagePushSettings.objects.filter(connection=connection).values_list("item_prices", flat=True).first()
    )
    return {str(meter): str(item_price) for meter, item_price in (mapping or {}).items()}


def provider_for(
    connection: ProviderConnection, *, item_prices: dict[str, str] | None = None
) -> BillingProvider:
    """The adapter. Chargebee's ``item_prices`` is read from the connection (in its tenant) unless given."""
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

        # Chargebee names usage by item price: the map says which meter each one is, for
        # reading invoice lines and usages as for pushing them.
        mapping = item_prices if item_prices is not None else item_price_map(connection)
        return ChargebeeProvider(
            api_key=credentials.get("api_key", ""),
            site=connection.site,
            base_url=connection.base_url or None,
            allow_writes=connection.allow_writes,
            meters={item_price: meter for meter, item_price in mapping.items()},
        )
    raise ProviderError(f"unknown provider {connection.provider!r}")
