from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from apps.providers.sandbox.stripe.server import serve


class Command(BaseCommand):
    help = "Serve the stateful Stripe sandbox on 127.0.0.1 until interrupted."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=12111)
        parser.add_argument("--webhook-url", default="", help="where /_sandbox/webhooks/deliver POSTs events")

    def handle(self, *args: Any, **options: Any) -> None:
        serve(options["port"], webhook_url=options["webhook_url"], write=self.stdout.write)
