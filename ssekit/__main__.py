"""`python -m ssekit demo` (also the `ssekit` command): run the demo chat app."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ssekit.ai import Engine

#: What `--provider` accepts.
PROVIDERS = ("demo", "openai", "anthropic")


def _engine(args: argparse.Namespace) -> Engine:
    """The engine `--provider` names (by default: openai with a base URL, else demo)."""
    from ssekit.ai import AnthropicEngine, DemoEngine, OpenAICompatibleEngine

    provider = args.provider or ("openai" if args.base_url else "demo")
    if provider == "demo":
        return DemoEngine(delay=args.delay)
    key_env = args.api_key_env or (
        "ANTHROPIC_API_KEY" if provider == "anthropic" else "SSEKIT_API_KEY"
    )
    key = os.environ.get(key_env)
    options = {"model": args.model} if args.model else {}
    if provider == "anthropic":
        if not key:
            raise ValueError(f"--provider anthropic needs an API key in ${key_env}.")
        return AnthropicEngine(args.base_url or "https://api.anthropic.com/v1", key, **options)
    if not args.base_url:
        raise ValueError("--provider openai needs --base-url (e.g. https://api.openai.com/v1).")
    return OpenAICompatibleEngine(args.base_url, key, **options)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ssekit", description="ssekit command line")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="serve the demo chat app on 127.0.0.1")
    demo.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    demo.add_argument("--port", type=int, default=8000, help="port to listen on (8000)")
    demo.add_argument("--db", default="ssekit-demo.sqlite3", help="SQLite file for the chats")
    demo.add_argument(
        "--provider",
        choices=PROVIDERS,
        help="who answers: the offline demo engine, an OpenAI-compatible API or Anthropic's "
        "(default: openai when a base URL is given, else demo)",
    )
    demo.add_argument(
        "--base-url",
        default=os.environ.get("SSEKIT_BASE_URL"),
        help="the API's URL (e.g. http://127.0.0.1:11434/v1); $SSEKIT_BASE_URL; "
        "anthropic's default: https://api.anthropic.com/v1",
    )
    demo.add_argument(
        "--model",
        default=os.environ.get("SSEKIT_MODEL"),
        help="$SSEKIT_MODEL, else gpt-4o-mini (openai) or claude-sonnet-4-5 (anthropic)",
    )
    demo.add_argument(
        "--api-key-env",
        help="the environment variable holding the API key "
        "(SSEKIT_API_KEY for openai, ANTHROPIC_API_KEY for anthropic)",
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

        from ssekit.demo import create_app
    except ImportError as exc:
        print(f"The demo needs: pip install 'ssekit[demo]' ({exc})", file=sys.stderr)
        return 1
    try:
        engine = _engine(args)
    except ValueError as exc:
        demo.error(str(exc))
    allowed = list(args.allowed_host)
    if args.host not in ("0.0.0.0", "::", ""):  # the address it listens on is a name it answers to
        allowed.append(f"[{args.host}]" if ":" in args.host else args.host)
    app = create_app(database=args.db, engine=engine, allowed_hosts=allowed)
    print(f"ssekit demo on http://{args.host}:{args.port}/  (Ctrl+C to stop)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
