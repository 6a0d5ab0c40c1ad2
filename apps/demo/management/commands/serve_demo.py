"""``make run``: the whole product on the embedded default, in one command.

Starts, as child processes, the Stripe and Chargebee sandboxes (their state kept under
``var/sandbox/``), a Celery worker and beat on the filesystem broker (``var/celery/``, no server),
loads the demo, and serves the web app; Ctrl-C or SIGTERM stops them all. Each child logs to
``var/log/<name>.log``; the console gets one line per component, then the URL and the logins.
"""

from __future__ import annotations

import functools
import os
import shlex
import socket
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

from apps.config.broker import FILESYSTEM_BROKER_URL, filesystem_broker_options
from apps.demo.supervisor import ChildFailed, Stopped, Supervisor, celery_worker_answers, http_answers

# The demo's loading step: a management command line; ``{url}`` is the app's URL.
# This is the one hook to change when the demo's loader changes.
DEFAULT_LOAD_COMMAND = "demo_setup --url {url}"


class Command(BaseCommand):
    help = "Start the sandboxes, a Celery worker and beat, load the demo, and serve the app (Ctrl-C stops)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--stripe-port", type=int, default=12111)
        parser.add_argument("--chargebee-port", type=int, default=12112)
        parser.add_argument("--concurrency", type=int, default=2, help="worker processes")
        parser.add_argument(
            "--load-command",
            default=DEFAULT_LOAD_COMMAND,
            help="management command that loads the demo ({url} = the app's URL); empty: none",
        )
        parser.add_argument(
            "--load-tasks",
            choices=("eager", "worker"),
            default="eager",
            help="where the loader's tasks run: in the loader (the demo is complete when the URL "
            "is printed) or on the worker",
        )
        parser.add_argument("--timeout", type=float, default=120, help="seconds each component may take")
        parser.add_argument("--load-timeout", type=float, default=1800, help="seconds the loader may take")
        parser.add_argument("--no-migrate", action="store_true", help="skip `migrate`")

    def handle(self, *args: Any, **options: Any) -> None:
        started = time.monotonic()
        var = Path(settings.VAR_DIR)
        host, port = options["host"], options["port"]
        probe_host = "127.0.0.1" if host in ("0.0.0.0", "") else host  # noqa: S104 - compared, not bound
        url = f"http://{host}:{port}/"
        stripe_url = f"http://127.0.0.1:{options['stripe_port']}"
        chargebee_url = f"http://127.0.0.1:{options['chargebee_port']}"
        celery_dir = var / "celery"
        broker_options = filesystem_broker_options(celery_dir)
        (var / "sandbox").mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "TRUEUP_VAR_DIR": str(var),
            "CELERY_BROKER_URL": FILESYSTEM_BROKER_URL,
            "TRUEUP_STRIPE_SANDBOX_URL": stripe_url,
            "TRUEUP_CHARGEBEE_SANDBOX_URL": chargebee_url,
        }
        supervisor = Supervisor(cwd=Path(settings.BASE_DIR), log_dir=var / "log", env=env)
        supervisor.install_signal_handlers()
        python = sys.executable
        node = f"trueup-{os.getpid()}@{socket.gethostname()}"
        self.stdout.write(f"Starting Trueup (logs in {self._rel(var / 'log')}/)")
        try:
            if not options["no_migrate"]:
                self._migrate(var / "log" / "migrate.log")
                self._status("database", "migrated", time.monotonic() - started)
            sandbox = var / "sandbox"
            stripe_port, chargebee_port = str(options["stripe_port"]), str(options["chargebee_port"])
            stripe_argv = ["-m", "apps.providers.sandbox.stripe", "--port", stripe_port]
            supervisor.start("stripe", [python, *stripe_argv, "--state-file", str(sandbox / "stripe.pickle")])
            chargebee_argv = ["-m", "apps.providers.sandbox.chargebee_server", "--port", chargebee_port]
            supervisor.start(
                "chargebee", [python, *chargebee_argv, "--state-file", str(sandbox / "chargebee.pickle")]
            )
            celery = [python, "-m", "celery", "-A", "apps.config"]
            concurrency = str(options["concurrency"])
            worker_options = ["-n", node, "-c", concurrency, "--without-gossip", "--without-mingle"]
            # Beat runs inside the worker (-B): one Django process less to start, which on a small
            # machine is seconds off `make run`; production runs `celery beat` on its own.
            supervisor.start("worker", [*celery, "worker", "-B", "-l", "INFO", *worker_options])
            # Any answer will do (401 without a key): the server is up. The SDK is not loaded here
            # for its key: importing it costs the supervisor seconds.
            for name, base, path in (
                ("stripe", stripe_url, "/v1/account"),
                ("chargebee", chargebee_url, "/api/v2/customers?limit=1"),
            ):
                probe = functools.partial(http_answers, base + path)
                took = supervisor.wait_until(name, probe, timeout=options["timeout"])
                self._status(f"{name} sandbox", base, took)
            # The loader and the web server start while the worker warms up: on two cores this
            # overlap is most of the start time. The URL is printed only once the demo is loaded.
            load = options["load_command"].strip()
            if load and options["load_tasks"] == "eager":
                self._start_loader(supervisor, load, url, eager=True)
            supervisor.start(
                "web",
                [python, "manage.py", "runserver", f"{host}:{port}", "--noreload", "--skip-checks"],
            )
            took = supervisor.wait_until(
                "worker",
                celery_worker_answers(
                    node, broker_url=FILESYSTEM_BROKER_URL, transport_options=broker_options
                ),
                timeout=options["timeout"],
            )
            self._status(
                "worker", f"celery, {options['concurrency']} processes, broker {self._rel(celery_dir)}/", took
            )
            self._status("beat", "in the worker, django_celery_beat DatabaseScheduler", None)
            if load and options["load_tasks"] == "worker":
                self._start_loader(supervisor, load, url, eager=False)
            if load:
                took = supervisor.finish("load", timeout=options["load_timeout"])
                self._status("demo data", load.split()[0], took)
            took = supervisor.wait_until(
                "web",
                lambda: http_answers(f"http://{probe_host}:{port}/healthz", status=200),
                timeout=options["timeout"],
            )
            self._status("web", url, took)
            if load:
                self.stdout.write("")
                self.stdout.write(supervisor.output("load"))
            self.stdout.write("")
            self.stdout.write(
                self.style.SUCCESS(f"Trueup is running on {url}")
                + f"  (ready in {time.monotonic() - started:.1f} s; Ctrl-C stops everything)"
            )
            supervisor.watch()
        except Stopped:
            self.stdout.write("Stopping...")
            supervisor.stop_all()
            self.stdout.write("Stopped.")
        except ChildFailed as failure:
            self.stderr.write(self.style.ERROR(f"FAIL  {failure.name}: {failure.message}"))
            if failure.tail:
                log = self._rel(var / "log" / f"{failure.name}.log")
                self.stderr.write(f"--- last lines of {log} ---\n{failure.tail}\n---")
            supervisor.stop_all()
            raise CommandError(f"{failure.name} {failure.message}; everything was stopped.") from None
        except BaseException:
            supervisor.stop_all()
            raise

    def _start_loader(self, supervisor: Supervisor, load: str, url: str, *, eager: bool) -> None:
        argv = [sys.executable, "manage.py", *shlex.split(load.replace("{url}", url))]
        # Eager: the loader runs its own tasks, so the demo is complete (reconciled) when it exits.
        supervisor.start("load", argv, env={"CELERY_BROKER_URL": ""} if eager else None, one_shot=True)

    def _migrate(self, log_path: Path) -> None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("w") as log:
            try:
                call_command("migrate", interactive=False, stdout=log, stderr=log)
            except Exception as exc:
                traceback.print_exc(file=log)
                raise ChildFailed("migrate", f"failed: {exc}") from exc
            finally:
                connections.close_all()  # the children open their own; SQLite prefers no idle writer

    def _status(self, name: str, detail: str, seconds: float | None) -> None:
        took = f"{seconds:5.1f}s" if seconds is not None else ""
        self.stdout.write(f"  {self.style.SUCCESS('ok')}  {name:<18} {detail:<52} {took}")

    @staticmethod
    def _rel(path: Path) -> str:
        try:
            return str(path.relative_to(Path(settings.BASE_DIR)))
        except ValueError:
            return str(path)
