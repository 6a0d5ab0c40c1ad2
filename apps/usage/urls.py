"""Usage screens, under /t/<tenant_slug>/usage/."""

urlpatterns: list = []
