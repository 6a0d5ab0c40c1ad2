from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from apps.providers.sandbox.stripe.server import serve


class Command(BaseCommand):
    help = "Serve the stateful Stripe sandbox on 127.0.0.1 until interrupted (Ctrl-C or SIGTERM)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=12111)
        parser.add_argument("--webhook-url", default="", help="where /_sandbox/webhooks/deliver POSTs events")
        parser.add_argument(
            "--state-file",
            default="",
            help="keep the state in this file across restarts (e.g. var/sandbox/stripe.pickle)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        serve(
            options["port"],
            webhook_url=options["webhook_url"],
            state_file=options["state_file"] or None,
            write=self.stdout.write,
        )
