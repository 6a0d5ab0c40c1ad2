from __future__ import annotations

from django.contrib.auth import get_user_model
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.models import Account
from apps.accounts.selectors import account_get, account_list
from apps.accounts.services import account_create, account_update
from apps.common.api import model_errors_as_api_errors
from apps.tenancy.permissions import request_actor, request_tenant
from apps.tenancy.roles import Action


class AccountOutputSerializer(serializers.ModelSerializer):
    csm_owner: serializers.SlugRelatedField = serializers.SlugRelatedField(slug_field="email", read_only=True)
    external_ids = serializers.SerializerMethodField()

    class Meta:
        model = Account
        fields = [
            "id",
            "key",
            "name",
            "segment",
            "timezone",
            "csm_owner",
            "external_ids",
            "created_at",
            "updated_at",
        ]

    def get_external_ids(self, account: Account) -> dict[str, str]:
        return {link.provider: link.external_id for link in account.external_ids.all()}


class AccountPagination(CursorPagination):
    ordering = ("name", "id")


class AccountListApi(APIView):
    """List the tenant's accounts, or create one."""

    required_action = Action.VIEW
    required_write_action = Action.ACCOUNT_EDIT

    class InputSerializer(serializers.Serializer):
        key = serializers.CharField(max_length=100)
        name = serializers.CharField(max_length=200)
        segment = serializers.CharField(max_length=50, required=False, default="", allow_blank=True)
        timezone = serializers.CharField(max_length=64, required=False, default="UTC")

    @extend_schema(responses=AccountOutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        queryset = account_list(
            request_tenant(request),
            search=request.query_params.get("q", ""),
            segment=request.query_params.get("segment", ""),
        ).prefetch_related("external_ids")
        paginator = AccountPagination()
        page = paginator.paginate_queryset(queryset, request, view=self)
        return paginator.get_paginated_response(AccountOutputSerializer(page, many=True).data)

    @extend_schema(request=InputSerializer, responses={201: AccountOutputSerializer})
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        with model_errors_as_api_errors():
            account = account_create(actor=request_actor(request), **data.validated_data)
        return Response(AccountOutputSerializer(account).data, status=status.HTTP_201_CREATED)


class AccountDetailApi(APIView):
    """Read or change one account."""

    required_action = Action.VIEW
    required_write_action = Action.ACCOUNT_EDIT

    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=200, required=False)
        segment = serializers.CharField(max_length=50, required=False, allow_blank=True)
        timezone = serializers.CharField(max_length=64, required=False)
        csm_owner = serializers.EmailField(required=False, allow_null=True)

    @extend_schema(responses=AccountOutputSerializer)
    def get(self, request: Request, account_id: int) -> Response:
        return Response(AccountOutputSerializer(account_get(request_tenant(request), account_id)).data)

    @extend_schema(request=InputSerializer, responses=AccountOutputSerializer)
    def patch(self, request: Request, account_id: int) -> Response:
        account = account_get(request_tenant(request), account_id)
        data = self.InputSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        if "csm_owner" in values:
            email = values["csm_owner"]
            values["csm_owner"] = get_user_model().objects.filter(email=email).first() if email else None
            if email and values["csm_owner"] is None:
                raise serializers.ValidationError({"csm_owner": "No user with that email."})
        with model_errors_as_api_errors():
            account = account_update(account=account, actor=request_actor(request), data=values)
        return Response(AccountOutputSerializer(account_get(request_tenant(request), account.pk)).data)
