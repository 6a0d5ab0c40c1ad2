"""Serve the Chargebee sandbox on 127.0.0.1 until interrupted (for the demo and manual testing)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from apps.providers.sandbox.chargebee_server import ChargebeeSandbox
from apps.providers.sandbox.persistence import wait_for_stop_signal


class Command(BaseCommand):
    help = "Run the local Chargebee-compatible sandbox (official SDK: base_url=<printed URL>)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=12112)
        parser.add_argument("--api-key", default="test_chargebee_key")
        parser.add_argument("--site", default="trueup-test")
        parser.add_argument(
            "--state-file",
            default="",
            help="keep the state in this file across restarts (e.g. var/sandbox/chargebee.pickle)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        sandbox = ChargebeeSandbox(
            api_key=options["api_key"],
            site=options["site"],
            port=options["port"],
            state_file=options["state_file"] or None,
        )
        self.stdout.write(f"Chargebee sandbox on {sandbox.url} (API {sandbox.url}/api/v2)")
        self.stdout.write(f"site: {sandbox.site}  api key: {sandbox.api_key}  (HTTP Basic, key as user)")
        if options["state_file"]:
            self.stdout.write(f"state kept in {options['state_file']}")
        self.stdout.write("Test helpers under /_sandbox/ ; Ctrl-C to stop.")
        sandbox.start()
        try:
            wait_for_stop_signal()
            self.stdout.write("stopping")
        finally:
            sandbox.stop()
