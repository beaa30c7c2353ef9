"""FastAPI + ssekit: stream a reply token by token, ending with [DONE] as OpenAI streams do.

Run (from the repository root):
    uvicorn examples.fastapi_app:app

See it:
    open http://127.0.0.1:8000/ in a browser (a page that shows the reply), or
    curl -N 'http://127.0.0.1:8000/chat?prompt=tell+me+a+story'

Ctrl+C ends open streams first, with the registry's farewell, so uvicorn exits at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from ssekit import StreamRegistry
from ssekit.adapters.starlette import SSEResponse

PAGE = """<!doctype html>
<title>ssekit + FastAPI</title>
<p id="reply"></p>
<script>
  const reply = document.getElementById("reply");
  const source = new EventSource("/chat?prompt=tell+me+a+story");
  source.onmessage = (e) => {
    if (e.data === "[DONE]") { source.close(); return; }
    reply.textContent += JSON.parse(e.data).token + " ";
  };
</script>
"""

registry = StreamRegistry(farewell="server restarting")
app = FastAPI(lifespan=registry.lifespan)


async def reply_to(prompt: str) -> AsyncIterator[dict[str, str]]:
    """A stand-in for a language model: the prompt's words back, one token at a time."""
    for word in ["You", "said:", *prompt.split()]:
        await asyncio.sleep(0.1)
        yield {"token": word}


@app.get("/", response_class=HTMLResponse)
async def index() -> str:
    return PAGE


@app.get("/chat", response_class=SSEResponse)
async def chat(prompt: str = "hello") -> SSEResponse:
    return SSEResponse(reply_to(prompt), end="[DONE]", heartbeat=10)
