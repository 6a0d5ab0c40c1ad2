from django.urls import path

from apps.reconciliation import settings_views as views

urlpatterns = [
    path("", views.settings_home, name="settings"),
    path("thresholds/", views.thresholds, name="settings-thresholds"),
    path("thresholds/try/", views.threshold_trial, name="settings-threshold-try"),
    path("thresholds/<int:threshold_id>/", views.threshold_edit, name="settings-threshold-edit"),
    path("thresholds/<int:threshold_id>/delete/", views.threshold_remove, name="settings-threshold-delete"),
    path("routing/", views.routing, name="settings-routing"),
    path("routing/try/", views.routing_trial, name="settings-routing-try"),
    path("routing/<int:routing_rule_id>/", views.routing_edit, name="settings-routing-edit"),
    path("routing/<int:routing_rule_id>/delete/", views.routing_remove, name="settings-routing-delete"),
    path("general/", views.general, name="settings-general"),
    path("schedule/", views.schedule_edit, name="settings-schedule"),
]
