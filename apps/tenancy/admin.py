from django.contrib import admin

from apps.tenancy.models import ApiKey, Membership, Tenant


class TenantModelAdmin(admin.ModelAdmin):
    """Admin for tenant-owned models: platform operators see every tenant (the request is unscoped)."""

    def get_queryset(self, request):
        return self.model.unscoped_objects.all()

    def get_list_display(self, request):
        return ("tenant", *super().get_list_display(request))


admin.site.register(
    Tenant, list_display=("name", "slug", "default_timezone", "created_at"), search_fields=("name", "slug")
)


@admin.register(Membership)
class MembershipAdmin(TenantModelAdmin):
    list_display = ("user", "role", "created_at")
    list_filter = ("role", "tenant")
    raw_id_fields = ("user",)

    def get_readonly_fields(self, request, obj=None):
        return ("tenant",) if obj else ()


@admin.register(ApiKey)
class ApiKeyAdmin(TenantModelAdmin):
    list_display = ("name", "prefix", "role", "created_at", "last_used_at", "revoked_at")
    list_filter = ("tenant", "role")
    readonly_fields = ("prefix", "key_hash", "created_by", "created_at", "last_used_at")

    def has_add_permission(self, request):
        return False  # keys are created in the app, where the raw key is shown once
