from django.urls import path

from apps.catalog import views

urlpatterns = [
    path("", views.catalog_home, name="catalog"),
    path("meters/new/", views.meter_new, name="meter-new"),
    path("meters/<int:meter_id>/edit/", views.meter_edit, name="meter-edit"),
    path("plans/new/", views.plan_new, name="plan-new"),
    path("plans/<int:plan_id>/", views.plan_detail, name="plan-detail"),
    path("versions/<int:version_id>/", views.plan_version, name="plan-version"),
    path("versions/<int:version_id>/charges/<int:meter_id>/", views.charge_edit, name="charge-edit"),
    path(
        "versions/<int:version_id>/charges/<int:meter_id>/preview/",
        views.charge_preview,
        name="charge-preview",
    ),
    path(
        "versions/<int:version_id>/charges/<int:meter_id>/remove/", views.charge_remove, name="charge-remove"
    ),
    path("overrides/new/", views.override_new, name="override-new"),
    path("accounts/<int:account_id>/phases/", views.account_phases, name="account-phases"),
]
