from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth import get_user_model

from apps.accounts.models import Account
from apps.tenancy.models import Membership, Tenant
from apps.tenancy.roles import Role


class AccountForm(forms.ModelForm):
    class Meta:
        model = Account
        fields = ["name", "segment", "timezone", "csm_owner"]
        labels = {"csm_owner": "CSM owner", "timezone": "Time zone"}

    def __init__(self, *args: Any, tenant: Tenant, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        member_ids = Membership.objects.filter(tenant=tenant, role__in=[Role.CSM, Role.ADMIN]).values(
            "user_id"
        )
        field = self.fields["csm_owner"]
        field.queryset = get_user_model().objects.filter(pk__in=member_ids).order_by("email")  # type: ignore[attr-defined]
        field.label_from_instance = lambda user: user.get_full_name() or user.email  # type: ignore[attr-defined]
