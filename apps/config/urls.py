from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import URLPattern, URLResolver, include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.permissions import AllowAny

from apps.accounts import apis as account_apis
from apps.accounts import views as account_views
from apps.billing import webhooks as billing_webhooks
from apps.common import views as common_views
from apps.reports import views as report_views
from apps.tenancy import views as tenancy_views

tenant_patterns = [
    path("", report_views.dashboard, name="tenant-dashboard"),
    path("accounts/", account_views.account_list_view, name="account-list"),
    path("accounts/<int:account_id>/", account_views.account_detail_view, name="account-detail"),
    path("accounts/<int:account_id>/edit/", account_views.account_edit_view, name="account-edit"),
    path("accounts/<int:account_id>/notes/", account_views.account_notes_view, name="account-notes"),
    path("settings/api-keys/", tenancy_views.api_keys, name="api-keys"),
    path("settings/api-keys/<int:key_id>/revoke/", tenancy_views.api_key_revoke, name="api-key-revoke"),
    path("catalog/", include("apps.catalog.urls")),
    path("reconciliation/", include("apps.reconciliation.urls")),
    path("reconciliation/", include("apps.approvals.urls")),
    path("settings/providers/", include("apps.billing.urls")),
    path("usage/", include("apps.usage.urls")),
    path("reports/", include("apps.reports.urls")),
    path("settings/", include("apps.reconciliation.settings_urls")),
    path("audit/", include("apps.audit.urls")),
]

api_patterns: list[URLPattern | URLResolver] = [
    path("accounts/", account_apis.AccountListApi.as_view(), name="api-account-list"),
    path("accounts/<int:account_id>/", account_apis.AccountDetailApi.as_view(), name="api-account-detail"),
    path("", include("apps.usage.api_urls")),
    path(
        "schema/",
        SpectacularAPIView.as_view(authentication_classes=[], permission_classes=[AllowAny]),
        name="api-schema",
    ),
    path(
        "docs/",
        SpectacularSwaggerSplitView.as_view(
            url_name="api-schema", authentication_classes=[], permission_classes=[AllowAny]
        ),
        name="api-docs",
    ),
]

urlpatterns = [
    path("", common_views.home, name="home"),
    path("healthz", common_views.healthz, name="healthz"),
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("t/<slug:tenant_slug>/", include(tenant_patterns)),
    path("api/v1/", include(api_patterns)),
    path("webhooks/stripe/<str:public_id>/", billing_webhooks.stripe_webhook, name="webhook-stripe"),
    path("webhooks/chargebee/<str:public_id>/", billing_webhooks.chargebee_webhook, name="webhook-chargebee"),
]

handler500 = "apps.common.views.server_error"
