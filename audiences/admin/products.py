"""The products that purchases name, with what is bought with each: read-only, refreshed nightly."""

from __future__ import annotations

from django.contrib import admin
from django.utils.formats import number_format
from django.utils.html import format_html_join
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from audiences.models import Product
from dialoog.admin_site import RecordAdminMixin


@admin.register(Product)
class ProductAdmin(RecordAdminMixin, admin.ModelAdmin):
    list_display = ["name", "category", "price", "buyers", "orders", "refreshed_at"]
    list_filter = ["category"]
    search_fields = ["name"]
    ordering = ["-buyers", "name"]
    fields = ["name", "category", "price", "url", "image_url", "buyers", "orders", "refreshed_at", "bought_with"]
    readonly_fields = fields

    @admin.display(description=_("bought with it"))
    def bought_with(self, obj: Product) -> str:
        """Best first, as the recommendations rank them (by confidence), with the support and the
        lift: a lift near 1 is a pair as often as chance would have it."""
        pairs = obj.affinities.select_related("related").order_by("-confidence", "related__name")[:10]
        return format_html_join(
            "",
            "<div>{} <span class='help'>({})</span> <span class='help'>{}</span></div>",
            (
                (
                    pair.related.name,
                    gettext("in %(share)s%% of its orders") % {"share": round(pair.confidence * 100)},
                    gettext(
                        "%(together)s orders together, %(support)s%% of all orders; "
                        "%(lift)s times as often as by chance"
                    )
                    % {
                        "together": pair.together,
                        "support": number_format(pair.support * 100, 1),
                        "lift": number_format(pair.lift, 1),
                    },
                )
                for pair in pairs
            ),
        ) or gettext("Nothing yet.")
