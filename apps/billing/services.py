from __future__ import annotations

import secrets
from typing import Any

from django.db import transaction

from apps.audit.services import Actor, audit_record
from apps.billing.models import ProviderConnection

SECRET_FIELDS = ("api_key", "webhook_secret", "webhook_username", "webhook_password")


@transaction.atomic
def connection_create(
    *, actor: Actor, provider: str, name: str, credentials: dict[str, str], base_url: str = "", site: str = ""
) -> ProviderConnection:
    """A read-only connection; its secrets are encrypted and the audit trail records only their names."""
    connection = ProviderConnection(
        provider=provider, name=name, base_url=base_url, site=site, public_id=secrets.token_urlsafe(16)
    )
    connection.set_credentials({k: v for k, v in credentials.items() if v})
    connection.full_clean()
    connection.save()
    audit_record(
        actor=actor,
        action="connection.create",
        target=connection,
        after={
            "provider": provider,
            "name": name,
            "base_url": base_url,
            "site": site,
            "secrets_set": sorted(k for k, v in credentials.items() if v),
        },
    )
    return connection


@transaction.atomic
def connection_update(
    *,
    actor: Actor,
    connection: ProviderConnection,
    data: dict[str, Any],
    credentials: dict[str, str] | None = None,
) -> ProviderConnection:
    """Change settings; secrets left blank keep their stored value. Enabling writes is audited too."""
    before = {k: getattr(connection, k) for k in data}
    for name, value in data.items():
        setattr(connection, name, value)
    changed_secrets = sorted(k for k, v in (credentials or {}).items() if v)
    if changed_secrets:
        connection.set_credentials(
            {**connection.get_credentials(), **{k: (credentials or {})[k] for k in changed_secrets}}
        )
    connection.full_clean()
    connection.save()
    audit_record(
        actor=actor,
        action="connection.update",
        target=connection,
        before=before,
        after={**data, "secrets_changed": changed_secrets},
    )
    return connection


def connection_check(*, connection: ProviderConnection) -> tuple[bool, str]:
    """Call the provider with the stored credentials: (worked, what it said)."""
    from apps.providers.base import ProviderError
    from apps.providers.registry import provider_for

    if not connection.get_credentials().get("api_key"):
        return False, "no API key is stored for this connection"
    try:
        return True, provider_for(connection).check()
    except ProviderError as exc:
        return False, str(exc)
