from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from apps.accounts.models import Account, AccountExternalId, AccountNote
from apps.audit.services import Actor, actor_label, audit_record, snapshot
from apps.common.services import model_create, model_update
from apps.tenancy.models import ApiKey, Membership
from apps.tenancy.permissions import authorize
from apps.tenancy.roles import Action
from apps.users.models import User

EDITABLE_FIELDS = ("name", "segment", "timezone", "csm_owner")


def account_create(
    *, actor: Actor, key: str, name: str, segment: str = "", timezone: str = "UTC", csm_owner: Any = None
) -> Account:
    """Create an account in the tenant in context."""
    account = Account(key=key, name=name, segment=segment, timezone=timezone, csm_owner=csm_owner)
    return model_create(instance=account, actor=actor, action="account.create")


def account_update(*, account: Account, actor: Actor, data: dict[str, Any]) -> Account:
    unknown = set(data) - set(EDITABLE_FIELDS)
    if unknown:
        raise ValueError(f"Not editable: {', '.join(sorted(unknown))}")
    return model_update(instance=account, data=data, actor=actor, action="account.update")


@transaction.atomic
def account_external_id_set(
    *, account: Account, provider: str, external_id: str, actor: Actor
) -> AccountExternalId:
    """Record (or change) the account's id at ``provider``."""
    existing = AccountExternalId.objects.filter(account=account, provider=provider).first()
    if existing is not None:
        return model_update(
            instance=existing,
            data={"external_id": external_id},
            actor=actor,
            action="account.external_id.update",
        )
    link = AccountExternalId(account=account, provider=provider, external_id=external_id)
    link.full_clean()
    link.save()
    audit_record(actor=actor, action="account.external_id.create", target=account, after=snapshot(link))
    return link


def _role_of(actor: Actor) -> str | None:
    """The actor's role in the tenant in context (the membership manager is scoped to it)."""
    if isinstance(actor, ApiKey):
        return actor.role
    if isinstance(actor, User):
        return Membership.objects.filter(user=actor).values_list("role", flat=True).first()
    return None


@transaction.atomic
def account_note_add(*, account: Account, actor: Actor, body: str) -> AccountNote:
    """Append a customer note to the account (notes are a log: never edited or deleted)."""
    authorize(_role_of(actor), Action.NOTE_ADD)
    text = body.strip()
    if not text:
        raise ValidationError({"body": "Write something to add a note."})
    note = AccountNote(
        account=account,
        author=actor if isinstance(actor, User) else None,
        author_label=str(actor) if isinstance(actor, User) else actor_label(actor),
        body=text,
    )
    note.full_clean()
    note.save()
    audit_record(actor=actor, action="account.note.add", target=account, after=snapshot(note))
    return note
