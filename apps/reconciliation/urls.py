from django.urls import path

from apps.reconciliation import views

urlpatterns = [
    path("runs/", views.runs, name="runs"),
    path("runs/<int:run_id>/", views.run_detail, name="run-detail"),
    path("runs/<int:run_id>/lines/<int:line_id>/", views.line_detail, name="run-line"),
    path("bundles/", views.bundle_upload, name="bundle-upload"),
    path("discrepancies/", views.queue, name="queue"),
    path("discrepancies/<int:discrepancy_id>/", views.discrepancy_detail, name="discrepancy"),
    path("discrepancies/<int:discrepancy_id>/status/", views.queue_row_status, name="queue-row-status"),
]
