from django.urls import path

from apps.billing import views

urlpatterns = [
    path("", views.connections, name="connections"),
    path("<int:connection_id>/", views.connection_detail, name="connection-detail"),
    path("<int:connection_id>/test/", views.connection_test, name="connection-test"),
    path("<int:connection_id>/sync/", views.connection_sync, name="connection-sync"),
    path("<int:connection_id>/usage-push/", views.usage_push, name="connection-usage-push"),
]
