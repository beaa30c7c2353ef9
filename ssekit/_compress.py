"""Compression that keeps an event stream live: negotiation, a sync-flushing compressor, bodies.

A compressor normally holds input back until it has enough to compress well, which holds events
back too (a gzip middleware can deliver a whole stream only when it ends).  Here every write
batch is compressed and then flushed: the client's decompressor can decode everything written so
far, so each event reaches `onmessage` as soon as it would uncompressed, while the compression
window still spans the whole stream (later events reuse earlier ones' field names and words,
which is where an event stream's ratio comes from).

Framework-neutral: the serving core calls `CompressionPolicy.choose()` with the request's
`Accept-Encoding`, adds `CompressionPolicy.headers()` to the response, and wraps the stream's
bytes in `CompressedBody` (WSGI, `for`) or `AsyncCompressedBody` (ASGI, `async for`).

gzip is always available (the stdlib's zlib); zstd uses Python 3.14's `compression.zstd` or the
`zstandard` package, br the `brotli` (or `brotlicffi`) package: `pip install ssekit[compress]`.
"""

from __future__ import annotations

import functools
import importlib
import zlib
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Generator,
    Iterable,
    Iterator,
)
from types import ModuleType
from typing import Any, Protocol

__all__ = [
    "CODINGS",
    "AsyncCompressedBody",
    "CompressedBody",
    "CompressionPolicy",
    "StreamCompressor",
    "available_codings",
    "make_compressor",
    "negotiate",
    "parse_accept_encoding",
]

#: Every coding ssekit can write, in the server's order of preference.  Measured on event
#: streams flushed per event (benchmarks/bench_compress.py), gzip gives the fewest bytes: a
#: flushed deflate block costs about 2 bytes, a brotli or zstd block several more, which
#: outweighs their better entropy coding when a batch is one small event.
CODINGS: tuple[str, ...] = ("gzip", "br", "zstd")

#: Default levels, chosen for per-event latency: each costs a few microseconds per small
#: batch.  Measured one token per write: gzip 6 sends 22% fewer bytes than level 1 for ~0.2 us
#: more per event, level 9 only 4% fewer for 50% more CPU.  br above 5 and zstd above 3 cost
#: more CPU for little.
DEFAULT_LEVELS: dict[str, int] = {"gzip": 6, "br": 5, "zstd": 3}
#: The valid range of `level` for each coding.
LEVEL_RANGES: dict[str, tuple[int, int]] = {"gzip": (1, 9), "br": (0, 11), "zstd": (1, 19)}
#: Window and match-table sizes (log2) that bound memory per open stream: an event stream's
#: repeats are near each other (the previous events), so a 64 KiB window and 16 Ki-entry tables
#: lose little ratio and keep thousands of open streams from costing gigabytes (zstd level 3's
#: own tables alone take ~800 KiB a stream).  gzip's window is at most 32 KiB anyway.
BROTLI_LGWIN = 16
ZSTD_WINDOW_LOG = 16
ZSTD_TABLE_LOG = 14

_X_ALIASES = {"x-gzip": "gzip"}  # RFC 9110 §8.4.1.3: a recipient SHOULD treat x-gzip as gzip


# -- negotiation ---------------------------------------------------------------------------------


def parse_accept_encoding(value: str) -> dict[str, float]:
    """`Accept-Encoding` as {coding: q}, codings in lower case; malformed members are skipped.

    RFC 9110 §12.5.3.  A missing `q` is 1; a `q` that is not a number from 0 to 1 makes that
    member invalid, and an invalid member is ignored rather than refused (a client's odd header
    should never cost it the response).  A coding named twice keeps its highest weight.
    """
    weights: dict[str, float] = {}
    for member in value.split(","):
        name, _, params = member.partition(";")
        coding = _X_ALIASES.get(name.strip().lower(), name.strip().lower())
        if not coding or not _is_token(coding):
            continue
        q = _weight(params)
        if q is None:
            continue
        weights[coding] = max(q, weights.get(coding, 0.0))
    return weights


def _is_token(text: str) -> bool:
    return all(c.isascii() and (c.isalnum() or c in "!#$%&'*+-.^_`|~") for c in text)


def _weight(params: str) -> float | None:
    """The `q` among a member's parameters: 1.0 when absent, None when malformed."""
    q = 1.0
    for param in params.split(";"):
        key, eq, raw = param.partition("=")
        if key.strip().lower() != "q":
            continue  # other parameters carry no meaning for content codings
        raw = raw.strip()
        if not eq or not raw or len(raw) > 5 or not all(c in "0123456789." for c in raw):
            return None
        try:
            q = float(raw)
        except ValueError:
            return None
        if not 0.0 <= q <= 1.0:
            return None
    return q


def negotiate(accept_encoding: str | None, allowed: Iterable[str]) -> str | None:
    """The coding to send for this `Accept-Encoding`, from `allowed`; None: send identity.

    RFC 9110 §12.5.3: a coding is acceptable when listed with q > 0, or not listed while `*` is
    (with q > 0).  The highest q wins; a tie goes to the first in `allowed` (the server's
    preference).  Identity wins instead when the client weights it (explicitly, or through
    `*`) strictly above the best coding.  No header at all means "anything", but uncompressed
    is the safe reading for clients that never ask (curl, old proxies), so it gives None; an
    empty header asks for identity.  `identity;q=0` cannot be honoured when no allowed coding
    is acceptable: the response is then sent uncompressed anyway, which every client reads.
    """
    if not accept_encoding:
        return None
    weights = parse_accept_encoding(accept_encoding)
    star = weights.get("*")
    best: str | None = None
    best_q = 0.0
    for coding in allowed:
        if coding in ("*", "identity"):
            continue  # not codings a response can be sent in
        q = weights.get(coding, star if star is not None else 0.0)
        if q > best_q:
            best, best_q = coding, q
    if best is None:
        return None
    identity_q = weights.get("identity", star)
    if identity_q is not None and identity_q > best_q:
        return None
    return best


# -- what is installed ---------------------------------------------------------------------------


def _import_first(*names: str) -> ModuleType | None:
    for name in names:
        module = _try_import(name)
        if module is not None:
            return module
    return None


def _try_import(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


@functools.cache  # a failed import searches sys.path again each time: once per process is enough
def _zstd_backend() -> tuple[str, ModuleType] | None:
    stdlib = _import_first("compression.zstd", "backports.zstd")  # the same API
    if stdlib is not None:
        return "stdlib", stdlib
    package = _import_first("zstandard")
    return None if package is None else ("zstandard", package)


@functools.cache
def _brotli_backend() -> ModuleType | None:
    return _import_first("brotli", "brotlicffi")


def available_codings() -> tuple[str, ...]:
    """The codings this process can write, in the server's order of preference."""
    installed = {"gzip": True, "br": _brotli_backend() is not None}
    installed["zstd"] = _zstd_backend() is not None
    found = [coding for coding in CODINGS if installed[coding]]
    return tuple(found)


# -- compressors ---------------------------------------------------------------------------------


class StreamCompressor(Protocol):
    """One stream's compressor: a flushed piece per write batch, then a trailer."""

    #: The `Content-Encoding` token: "gzip", "br" or "zstd".
    coding: str

    def compress(self, batch: bytes) -> bytes:
        """Compress `batch` and flush, so the client can decode everything written so far.

        b"" gives b"" (nothing to flush)."""
        ...

    def finish(self) -> bytes:
        """The end of the compressed stream (gzip's CRC and length, the last zstd/br block)."""
        ...


class _Gzip:
    """gzip (RFC 1952) via zlib: a gzip header (wbits=31), a partial flush after every batch.

    zlib's manual (zlib.net/manual.html, `deflate`): Z_PARTIAL_FLUSH makes all input so far
    decodable, like Z_SYNC_FLUSH, but ends the block with a 10-bit empty block rather than a
    byte-aligned 4-byte marker, so a one-token event costs ~5 bytes on the wire, not ~9.
    """

    coding = "gzip"

    def __init__(self, level: int) -> None:
        self._z = zlib.compressobj(level, zlib.DEFLATED, 16 + zlib.MAX_WBITS)

    def compress(self, batch: bytes) -> bytes:
        if not batch:
            return b""
        return self._z.compress(batch) + self._z.flush(zlib.Z_PARTIAL_FLUSH)

    def finish(self) -> bytes:
        return self._z.flush(zlib.Z_FINISH)


class _Brotli:
    """br (RFC 7932): `process()` then `flush()` per batch, `finish()` at the end."""

    coding = "br"

    def __init__(self, module: ModuleType, level: int) -> None:
        self._c: Any = module.Compressor(mode=module.MODE_TEXT, quality=level, lgwin=BROTLI_LGWIN)

    def compress(self, batch: bytes) -> bytes:
        if not batch:
            return b""
        out: bytes = self._c.process(batch) + self._c.flush()
        return out

    def finish(self) -> bytes:
        out: bytes = self._c.finish()
        return out


class _ZstdStdlib:
    """zstd (RFC 8878) via `compression.zstd`: FLUSH_BLOCK per batch, FLUSH_FRAME at the end."""

    coding = "zstd"

    def __init__(self, module: ModuleType, level: int) -> None:
        params = module.CompressionParameter
        self._flush_block = module.ZstdCompressor.FLUSH_BLOCK
        self._flush_frame = module.ZstdCompressor.FLUSH_FRAME
        self._c: Any = module.ZstdCompressor(
            options={
                params.compression_level: level,
                params.window_log: ZSTD_WINDOW_LOG,
                params.hash_log: ZSTD_TABLE_LOG,
                params.chain_log: ZSTD_TABLE_LOG,
            }
        )

    def compress(self, batch: bytes) -> bytes:
        if not batch:
            return b""
        out: bytes = self._c.compress(batch, mode=self._flush_block)
        return out

    def finish(self) -> bytes:
        out: bytes = self._c.flush(mode=self._flush_frame)
        return out


class _ZstdPackage:
    """zstd (RFC 8878) via `zstandard`: COMPRESSOBJ_FLUSH_BLOCK per batch, a frame end last."""

    coding = "zstd"

    def __init__(self, module: ModuleType, level: int) -> None:
        params = module.ZstdCompressionParameters.from_level(
            level, window_log=ZSTD_WINDOW_LOG, hash_log=ZSTD_TABLE_LOG, chain_log=ZSTD_TABLE_LOG
        )
        self._flush_block = module.COMPRESSOBJ_FLUSH_BLOCK
        self._flush_frame = module.COMPRESSOBJ_FLUSH_FINISH
        self._c: Any = module.ZstdCompressor(compression_params=params).compressobj()

    def compress(self, batch: bytes) -> bytes:
        if not batch:
            return b""
        out: bytes = self._c.compress(batch) + self._c.flush(self._flush_block)
        return out

    def finish(self) -> bytes:
        out: bytes = self._c.flush(self._flush_frame)
        return out


def make_compressor(coding: str, level: int | None = None) -> StreamCompressor:
    """A fresh compressor for one stream (`level`: None for `DEFAULT_LEVELS[coding]`)."""
    level = _check_level(coding, level)
    if coding == "gzip":
        return _Gzip(level)
    if coding == "br":
        module = _brotli_backend()
        if module is None:
            raise ValueError(_missing("br", "brotli"))
        return _Brotli(module, level)
    if coding == "zstd":
        backend = _zstd_backend()
        if backend is None:
            raise ValueError(_missing("zstd", "zstandard"))
        kind, zstd = backend
        return _ZstdStdlib(zstd, level) if kind == "stdlib" else _ZstdPackage(zstd, level)
    raise ValueError(_unknown(coding))


def _check_level(coding: str, level: int | None) -> int:
    if coding not in LEVEL_RANGES:
        raise ValueError(_unknown(coding))
    if level is None:
        return DEFAULT_LEVELS[coding]
    low, high = LEVEL_RANGES[coding]
    if isinstance(level, bool) or not isinstance(level, int) or not low <= level <= high:
        raise ValueError(f"{coding} level must be an int from {low} to {high}, not {level!r}.")
    return level


def _unknown(coding: object) -> str:
    return f"Unknown content coding {coding!r}; ssekit can compress with: {', '.join(CODINGS)}."


def _missing(coding: str, package: str) -> str:
    return (
        f"Content coding {coding!r} needs the {package!r} package, which is not installed; "
        f"install ssekit[compress], or leave {coding!r} out of compress=."
    )


# -- the option, validated once ------------------------------------------------------------------


class CompressionPolicy:
    """The `compress=` option of an app or view, validated when it is built.

    `compress=False` (the default): never compress.  `True`: every coding installed here, in
    `CODINGS` order (gzip first).  A tuple such as `("gzip",)` or `("zstd", "gzip")`: only
    those, preferred in that order when a client accepts several equally (a coding whose
    package is missing is an error now, not a surprise per request).  `levels` overrides
    `DEFAULT_LEVELS`.
    """

    __slots__ = ("codings", "levels")

    def __init__(
        self, compress: bool | Iterable[str] = False, *, levels: dict[str, int] | None = None
    ) -> None:
        #: The codings this app may send, most preferred first; () when off.
        self.codings: tuple[str, ...]
        if compress is True:
            self.codings = available_codings()
        elif compress is False:
            self.codings = ()
        elif isinstance(compress, (str, bytes)) or not isinstance(compress, Iterable):
            raise TypeError(
                'compress must be True, False or a tuple of codings such as ("gzip",), '
                f"not {compress!r}."
            )
        else:
            wanted = list(compress)
            for coding in wanted:
                if coding not in CODINGS:
                    raise ValueError(_unknown(coding))
            installed = available_codings()
            for coding in wanted:
                if coding not in installed:
                    package = "zstandard" if coding == "zstd" else "brotli"
                    raise ValueError(_missing(coding, package))
            if not wanted:
                raise ValueError("compress=() allows no coding; use compress=False to turn it off.")
            self.codings = tuple(dict.fromkeys(wanted))  # the app's order, each once
        levels = dict(levels or {})
        for coding, level in levels.items():
            _check_level(coding, level)
        #: The level per coding (defaults filled in).
        self.levels: dict[str, int] = {**DEFAULT_LEVELS, **levels}

    @property
    def enabled(self) -> bool:
        return bool(self.codings)

    def choose(self, accept_encoding: str | None) -> str | None:
        """The coding for a request with this `Accept-Encoding` value; None: uncompressed."""
        if not self.codings:
            return None
        return negotiate(accept_encoding, self.codings)

    def headers(self, coding: str | None) -> tuple[tuple[str, str], ...]:
        """Headers to add to the stream's response (the same for GET and HEAD).

        `Content-Encoding` when a coding was chosen; `Vary: Accept-Encoding` whenever
        compression is on, compressed or not, because the response depends on that header
        (RFC 9110 §12.5.5), so a cache must not hand a gzip body to a client that did not ask.
        A HEAD response carries exactly these headers and no body: do not start the stream (nor
        build a compressor) for it.  Merge `Vary` with any the app set (`Vary: Cookie, ...`).
        """
        if not self.codings:
            return ()
        if coding is None:
            return (("Vary", "Accept-Encoding"),)
        return (("Content-Encoding", coding), ("Vary", "Accept-Encoding"))

    def compressor(self, coding: str) -> StreamCompressor:
        """A fresh compressor for one response in `coding` (one of `self.codings`)."""
        if coding not in self.codings:
            raise ValueError(f"coding {coding!r} is not one of this app's {self.codings}.")
        return make_compressor(coding, self.levels[coding])

    def __repr__(self) -> str:
        return f"CompressionPolicy(codings={self.codings!r})"


# -- bodies --------------------------------------------------------------------------------------


class CompressedBody:
    """A WSGI body: each chunk of `chunks` compressed and flushed, then the trailer.

    One input chunk is one write batch of the stream, so one output piece; empty output is
    skipped.  `close()` closes `chunks` (the `SSEStream`, or the adapter's body around it), as
    a WSGI server calls it when the client leaves.  The trailer is written only when the stream
    ends by itself: a client that left needs none.
    """

    def __init__(self, chunks: Iterable[bytes], compressor: StreamCompressor) -> None:
        self._chunks = chunks
        self.compressor = compressor
        self._run: Generator[bytes, None, None] | None = None

    def __iter__(self) -> Iterator[bytes]:
        if self._run is None:
            self._run = self._compressed()
        return self._run

    def _compressed(self) -> Generator[bytes, None, None]:
        compress = self.compressor.compress
        for chunk in self._chunks:
            out = compress(chunk)
            if out:
                yield out
        tail = self.compressor.finish()
        if tail:
            yield tail

    def close(self) -> None:
        try:
            if self._run is not None:
                self._run.close()
        finally:
            close = getattr(self._chunks, "close", None)
            if callable(close):
                close()


class AsyncCompressedBody:
    """An ASGI body: `async for` gives each chunk of `chunks` compressed and flushed, then the
    trailer.  `aclose()` closes `chunks` (call it on disconnect, as for an `SSEStream`)."""

    def __init__(self, chunks: AsyncIterable[bytes], compressor: StreamCompressor) -> None:
        self._chunks = chunks
        self.compressor = compressor
        self._run: AsyncGenerator[bytes, None] | None = None

    def __aiter__(self) -> AsyncIterator[bytes]:
        if self._run is None:
            self._run = self._compressed()
        return self._run

    async def _compressed(self) -> AsyncGenerator[bytes, None]:
        compress = self.compressor.compress
        async for chunk in self._chunks:
            out = compress(chunk)
            if out:
                yield out
        tail = self.compressor.finish()
        if tail:
            yield tail

    async def aclose(self) -> None:
        try:
            if self._run is not None:
                await self._run.aclose()
        finally:
            aclose = getattr(self._chunks, "aclose", None)
            if callable(aclose):
                await aclose()
