from django.urls import path

from apps.reports import views

urlpatterns = [
    path("accuracy/", views.accuracy, name="accuracy-report"),
    path("accuracy/export/", views.accuracy_export, name="accuracy-export"),
]
