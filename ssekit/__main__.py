"""`python -m ssekit demo` (also the `ssekit` command): run the demo chat app."""

from __future__ import annotations

import argparse
import os
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ssekit", description="ssekit command line")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="serve the demo chat app on 127.0.0.1")
    demo.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    demo.add_argument("--port", type=int, default=8000, help="port to listen on (8000)")
    demo.add_argument("--db", default="ssekit-demo.sqlite3", help="SQLite file for the chats")
    demo.add_argument(
        "--base-url",
        default=os.environ.get("SSEKIT_BASE_URL"),
        help="an OpenAI-compatible API (e.g. http://127.0.0.1:11434/v1); $SSEKIT_BASE_URL",
    )
    demo.add_argument("--model", default=os.environ.get("SSEKIT_MODEL", "gpt-4o-mini"))
    demo.add_argument(
        "--api-key-env",
        default="SSEKIT_API_KEY",
        help="the environment variable holding the API key (SSEKIT_API_KEY)",
    )
    demo.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME",
        help="also answer requests for this Host name (or name:port); repeatable. "
        "127.0.0.1, localhost and [::1] always are",
    )
    demo.add_argument("--delay", type=float, default=0.05, help="demo engine seconds per token")
    args = parser.parse_args(argv)

    try:
        import uvicorn

        from ssekit.ai import DemoEngine, Engine, OpenAICompatibleEngine
        from ssekit.demo import create_app
    except ImportError as exc:
        print(f"The demo needs: pip install 'ssekit[demo]' ({exc})", file=sys.stderr)
        return 1
    engine: Engine
    if args.base_url:
        engine = OpenAICompatibleEngine(
            args.base_url, os.environ.get(args.api_key_env), model=args.model
        )
    else:
        engine = DemoEngine(delay=args.delay)
    allowed = list(args.allowed_host)
    if args.host not in ("0.0.0.0", "::", ""):  # the address it listens on is a name it answers to
        allowed.append(f"[{args.host}]" if ":" in args.host else args.host)
    app = create_app(database=args.db, engine=engine, allowed_hosts=allowed)
    print(f"ssekit demo on http://{args.host}:{args.port}/  (Ctrl+C to stop)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
