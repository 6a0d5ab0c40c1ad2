from django.urls import path

from apps.approvals import views

urlpatterns = [
    path("discrepancies/<int:discrepancy_id>/propose/", views.propose, name="propose"),
    path("proposals/<int:proposal_id>/decide/", views.decide, name="proposal-decide"),
]
