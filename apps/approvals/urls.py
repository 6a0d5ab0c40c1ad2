from django.urls import path

from apps.approvals import views

urlpatterns = [
    path("discrepancies/<int:discrepancy_id>/propose/", views.propose, name="propose"),
    path("proposals/<int:proposal_id>/decide/", views.decide, name="proposal-decide"),
    path("proposals/<int:proposal_id>/cancel/", views.cancel, name="proposal-cancel"),
    path("discrepancies/<int:discrepancy_id>/hold-invoice/", views.hold, name="invoice-hold"),
    path("discrepancies/<int:discrepancy_id>/release-invoice/", views.release, name="invoice-release"),
]
