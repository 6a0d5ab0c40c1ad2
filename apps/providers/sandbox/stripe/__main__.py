"""``python -m apps.providers.sandbox.stripe --port 12111``: the sandbox without Django."""

import argparse

from .server import serve

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--port", type=int, default=12111)
parser.add_argument("--webhook-url", default="")
parser.add_argument("--state-file", default="", help="keep the state in this file across restarts")
args = parser.parse_args()
serve(args.port, webhook_url=args.webhook_url, state_file=args.state_file or None)
