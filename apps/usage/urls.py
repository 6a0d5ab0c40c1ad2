"""Usage screens, under /t/<tenant_slug>/usage/."""

from django.urls import path

from apps.usage import views

urlpatterns = [
    path("", views.usage_overview, name="usage-overview"),
    path("imports/", views.import_list, name="usage-import-list"),
    path("imports/<int:import_id>/", views.import_detail, name="usage-import-detail"),
    path("imports/<int:import_id>/errors.csv", views.import_errors_download, name="usage-import-errors"),
    path("late/", views.late_arrivals, name="usage-late"),
    path("settings/", views.usage_settings, name="usage-settings"),
]
