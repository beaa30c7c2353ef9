"""Upstream failures as the client may see them: a generic message; the detail logged, redacted.

An upstream's error body can hold the application's own credentials (an echoed key, a header):
by default only "The model service answered 401." reaches the client.  An engine built with
`expose_upstream_errors=True` shows the upstream's message too, still redacted.
"""

from __future__ import annotations

import json
import logging
import re

from ssekit._errors import StreamError

__all__ = [
    "MODEL_SERVICE",
    "UPSTREAM_STREAM",
    "oversized_error",
    "redact_secrets",
    "reported_error",
    "status_error",
    "unreachable_error",
]

#: Words that, followed by `:` or `=` (or a space and a long token), introduce a secret.
_SECRET_NAMES = (
    r"x-api-key|api[-_ ]?key|access[-_ ]?token|auth[-_ ]?token|refresh[-_ ]?token|"
    r"client[-_ ]?secret|secret[-_ ]?key|secret|password|passwd|token|key"
)
_SECRET_PATTERNS = [
    # "Bearer <token>", "Basic <credentials>" (an Authorization header echoed back).
    (re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=\-]+", re.IGNORECASE), r"\1 [REDACTED]"),
    # api_key=..., "api-key": "...", x-api-key: ..., password=..., token: ...
    (
        re.compile(rf"\b({_SECRET_NAMES})([\"']?\s*[:=]\s*[\"']?)[^\s\"'&,;<>}}]+", re.IGNORECASE),
        r"\1\2[REDACTED]",
    ),
    # "key 3f2a...": a long hex or base64 token right after a key-ish word.
    (
        re.compile(rf"\b({_SECRET_NAMES})(\W{{1,3}})[A-Za-z0-9+/_\-]{{16,}}=*", re.IGNORECASE),
        r"\1\2[REDACTED]",
    ),
    # "sk-live-...", "sk-proj-...", "sk-ant-...": OpenAI/Anthropic-style keys anywhere.
    (re.compile(r"\bsk-[A-Za-z0-9_\-]{4,}"), "sk-[REDACTED]"),
]
logger = logging.getLogger("ssekit")

#: How much of an upstream error body is logged.
_LOGGED_BODY_LIMIT = 2000

#: How the client's error messages name the upstream: "The model service answered 401."
MODEL_SERVICE = "model service"
UPSTREAM_STREAM = "upstream stream"


def redact_secrets(text: str) -> str:
    """`text` with anything that looks like a credential replaced by `[REDACTED]`.

    Covers `sk-...` keys, `Bearer ...`, `api_key=...` / `"api-key": "..."` / `x-api-key: ...`
    and other key-ish names (token, secret, password) followed by a value.  Used before an
    upstream's error body is logged or, when asked, shown.  A best effort, not a guarantee.
    """
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _excerpt(text: str, limit: int) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[:limit] + "..."


def _upstream_detail(body: str) -> str:
    """The upstream's own error message (`error.message`), else an excerpt of its body."""
    try:
        payload = json.loads(body)
        message = payload.get("error", {}).get("message") or payload.get("message")
    except (ValueError, AttributeError):
        message = None
    return _excerpt(str(message) if message else body, 300) or "no details"


def status_error(service: str, status: int, body: str, *, expose: bool) -> StreamError:
    """The `StreamError` for an upstream that answered `status`; its body is logged, redacted."""
    logger.warning(
        "ssekit: %s answered %d: %s",
        service,
        status,
        redact_secrets(_excerpt(body, _LOGGED_BODY_LIMIT)) or "(empty body)",
    )
    generic = f"The {service} answered {status}."
    if not expose:
        return StreamError(generic)
    return StreamError(f"The {service} answered {status}: {redact_secrets(_upstream_detail(body))}")


def unreachable_error(service: str, exc: Exception, *, expose: bool) -> StreamError:
    """The `StreamError` for an upstream that could not be reached or read; the cause is logged."""
    detail = redact_secrets(f"{type(exc).__name__}: {exc}")
    logger.warning("ssekit: the %s could not be reached or read: %s", service, detail)
    if not expose:
        return StreamError(f"The {service} could not be reached.")
    return StreamError(f"The {service} could not be reached: {detail}")


def reported_error(service: str, payload_text: str, shown: object, *, expose: bool) -> StreamError:
    """The `StreamError` for an error the upstream reported mid-stream; the payload is logged."""
    detail = redact_secrets(_excerpt(payload_text, _LOGGED_BODY_LIMIT))
    logger.warning("ssekit: the %s reported an error mid-stream: %s", service, detail)
    if not expose:
        return StreamError(f"The {service} reported an error.")
    return StreamError(
        f"The {service} reported an error: {redact_secrets(_excerpt(str(shown), 300))}"
    )


def oversized_error(service: str, exc: ValueError) -> StreamError:
    """The `StreamError` for an upstream whose line or event went over the parser's limit."""
    logger.warning("ssekit: the %s sent more than the parser accepts: %s", service, exc)
    return StreamError(f"The {service} sent an event larger than this server accepts.")
