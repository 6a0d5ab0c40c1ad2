"""Usage API, under /api/v1/."""

from django.urls import path

from apps.usage import apis

urlpatterns = [
    path("events", apis.EventListApi.as_view(), name="api-event-list"),
    path("events/imports", apis.EventImportListApi.as_view(), name="api-event-import-list"),
    path(
        "events/imports/<int:import_id>", apis.EventImportDetailApi.as_view(), name="api-event-import-detail"
    ),
    path(
        "events/imports/<int:import_id>/errors",
        apis.EventImportErrorsApi.as_view(),
        name="api-event-import-errors",
    ),
]
