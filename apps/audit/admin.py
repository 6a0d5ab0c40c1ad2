from django.contrib import admin

from apps.audit.models import AuditEvent
from apps.tenancy.admin import TenantModelAdmin


@admin.register(AuditEvent)
class AuditEventAdmin(TenantModelAdmin):
    list_display = ("created_at", "actor_label", "action", "object_type", "object_repr", "request_id")
    list_filter = ("tenant", "action")
    search_fields = ("object_repr", "actor_label", "request_id")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
