from __future__ import annotations

import datetime as dt

from django.db import transaction
from django.utils import timezone

from apps.audit.services import Actor, audit_record, snapshot
from apps.common.services import model_create, model_update
from apps.tenancy.context import tenant_context, unscoped_context
from apps.tenancy.models import ApiKey, Membership, Tenant, hash_api_key
from apps.users.models import User


@transaction.atomic
def tenant_create(*, slug: str, name: str, default_timezone: str = "UTC", actor: Actor = None) -> Tenant:
    tenant = Tenant(slug=slug, name=name, default_timezone=default_timezone)
    tenant.full_clean()
    tenant.save()
    with tenant_context(tenant):
        audit_record(actor=actor, action="tenant.create", target=tenant, after=snapshot(tenant))
    return tenant


def membership_add(*, user: User, role: str, actor: Actor) -> Membership:
    """Give ``user`` a role in the tenant in context."""
    return model_create(instance=Membership(user=user, role=role), actor=actor, action="membership.create")


def membership_change_role(*, membership: Membership, role: str, actor: Actor) -> Membership:
    return model_update(instance=membership, data={"role": role}, actor=actor, action="membership.update")


def apikey_create(*, name: str, role: str, actor: Actor) -> tuple[ApiKey, str]:
    """Create a key in the tenant in context; returns it with the raw key, shown once."""
    prefix, raw = ApiKey.generate()
    key = ApiKey(
        name=name,
        role=role,
        prefix=prefix,
        key_hash=hash_api_key(raw),
        created_by=actor if isinstance(actor, User) else None,
    )
    model_create(instance=key, actor=actor, action="apikey.create")
    return key, raw


def apikey_revoke(*, key: ApiKey, actor: Actor) -> ApiKey:
    return model_update(
        instance=key, data={"revoked_at": timezone.now()}, actor=actor, action="apikey.revoke"
    )


def apikey_authenticate(raw_key: str) -> ApiKey | None:
    """The active key matching ``raw_key``, or None.

    The key names its tenant only through its hash, so this one lookup crosses
    tenants; the hash is unique and the key holds 256 random bits.
    """
    if not raw_key.startswith("tu_") or len(raw_key) > 200:
        return None
    with unscoped_context(reason="find the tenant of an API key by its hash"):
        key = ApiKey.unscoped_objects.filter(key_hash=hash_api_key(raw_key), revoked_at__isnull=True).first()
        if key is not None and (
            key.last_used_at is None or timezone.now() - key.last_used_at > dt.timedelta(minutes=1)
        ):
            ApiKey.unscoped_objects.filter(pk=key.pk).update(last_used_at=timezone.now())
    return key
