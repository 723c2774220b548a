# The dashboard's HTTP server (aiohttp). Safety, in order of the guard below:
#  * Host must name this server (loopback names and the bound address): a web page that
#    rebinds its own DNS name to 127.0.0.1 (DNS rebinding) sends its own name and is refused.
#  * Every /api call carries the token printed at start (header X-Leither-Token); the token
#    is compared in constant time. Without it nothing is read or written: MiMei contents and
#    the books are private to whoever started the dashboard, not to every local user.
#  * A write (POST) must come from our own page: its Origin, when a browser sends one, must be
#    this server; its body must be JSON (so a cross-site form cannot post it without a
#    preflight, which we never grant).
#  * The page itself loads nothing from elsewhere (CSP 'self'; every asset is ours).
"""The dashboard's web server."""

from __future__ import annotations

import asyncio
import hmac
import re
import secrets
import signal
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

from aiohttp import web

from leither_host.dashboard import api
from leither_host.dashboard.jobs import Job, Jobs
from leither_host.dashboard.sampler import POLL_S, Sampler
from leither_host.errors import CliError

STATIC = Path(__file__).parent / "static"
TOKEN_HEADER = "X-Leither-Token"
DEFAULT_PORT = 8765
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
_WRITES = ("POST", "PUT", "PATCH", "DELETE")
_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'")
TOKEN: web.AppKey[str] = web.AppKey("token", str)
# Host header values accepted (empty: any). A set filled in place once the port is known.
HOSTS: web.AppKey[set[str]] = web.AppKey("hosts", set)
_PAGES = {"/": "index.html", "/style.css": "style.css", "/favicon.svg": "favicon.svg"}
_SCRIPT = re.compile(r"^[a-z]+\.js$")  # the page's modules, static/js/NAME.js


def allowed_hosts(bind: str, port: int) -> frozenset[str]:
    """Host header values naming this server ("" for any: a server bound to every address is
    reached by names we cannot know; the token still guards it)."""
    if bind in ("0.0.0.0", "::", ""):
        return frozenset()
    names = set(LOOPBACK_NAMES) | {bind if ":" not in bind else f"[{bind}]"}
    return frozenset(f"{n}:{port}" for n in names) | (names if port == 80 else frozenset())


@web.middleware
async def guard(request: web.Request, handler: api.Handler) -> web.StreamResponse:
    hosts = request.app[HOSTS]
    if hosts and request.host not in hosts:
        return api.error(f"unexpected Host {request.host!r}: open the dashboard by the "
                         "address it printed", 403)
    if request.path.startswith("/api/"):
        given = request.headers.get(TOKEN_HEADER, "")
        if not hmac.compare_digest(given.encode(), request.app[TOKEN].encode()):
            return api.error("the dashboard token is missing or wrong: use the link "
                             "`leither dashboard` printed", 401)
        if request.method in _WRITES:
            origin = request.headers.get("Origin")
            if origin is not None and origin != f"{request.scheme}://{request.host}":
                return api.error(f"a write from another origin ({origin}) is refused", 403)
            if request.headers.get("Sec-Fetch-Site") not in (None, "same-origin", "none"):
                return api.error("a write from another site is refused", 403)
    elif request.method not in ("GET", "HEAD"):
        return api.error("method not allowed", 405)
    response = await handler(request)
    response.headers["Content-Security-Policy"] = _CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    return response


async def _page(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(STATIC / _PAGES[request.path])


async def _script(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    path = STATIC / "js" / name
    if not _SCRIPT.match(name) or not path.is_file():
        return api.error(f"no script {name}", 404)
    return web.FileResponse(path, headers={"Content-Type": "text/javascript"})


def make_app(token: str, hosts: frozenset[str] = frozenset(), poll_s: float = POLL_S,
             sample: bool = True, command: list[str] | None = None) -> web.Application:
    """The application: routes, guard, and (sample=False in tests) the background sampler."""
    if len(token) < 16:
        raise CliError("the dashboard token must be at least 16 characters")
    app = web.Application(middlewares=[guard], client_max_size=api.MAX_BODY)
    app[TOKEN] = token
    app[HOSTS] = set(hosts)
    sampler = Sampler(poll_s)

    def done(job: Job) -> None:
        sampler.poke()  # the fleet shows what the job changed at once

    app[api.SAMPLER] = sampler
    app[api.JOBS] = Jobs(done, command)
    app[api.POOL] = ThreadPoolExecutor(api.READ_THREADS, thread_name_prefix="dashboard-read")
    for path in _PAGES:
        app.router.add_get(path, _page)
    app.router.add_get("/js/{name}", _script)
    api.add_routes(app)

    async def startup(app: web.Application) -> None:
        if sample:
            sampler.start()

    async def cleanup(app: web.Application) -> None:
        await app[api.JOBS].stop()
        await sampler.stop()
        app[api.POOL].shutdown(wait=False, cancel_futures=True)

    app.on_startup.append(startup)
    app.on_cleanup.append(cleanup)
    return app


def new_token() -> str:
    return secrets.token_urlsafe(24)


def serve(host: str = "127.0.0.1", port: int = DEFAULT_PORT, poll_s: float = POLL_S,
          token: str | None = None, announce: Callable[[str], None] = print) -> None:
    """Run until interrupted; announce() gets the address (with the token) once listening."""
    asyncio.run(_serve(host, port, poll_s, token or new_token(), announce))


async def _serve(host: str, port: int, poll_s: float, token: str,
                 announce: Callable[[str], None]) -> None:
    app = make_app(token, poll_s=poll_s)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as err:
        await runner.cleanup()
        raise CliError(f"cannot listen on {host}:{port}: {err.strerror or err} "
                       f"(another dashboard? try --port 0 for any free port)") from None
    server = getattr(site, "_server", None)
    sockets = getattr(server, "sockets", None) or []
    bound = sockets[0].getsockname()[1] if sockets else port
    app[HOSTS].update(allowed_hosts(host, bound))
    shown = host if host not in ("0.0.0.0", "::") else "127.0.0.1"
    shown = f"[{shown}]" if ":" in shown else shown
    announce(f"leither dashboard: http://{shown}:{bound}/#token={token}")
    announce(f"token {token} (every API call needs it; Ctrl-C stops the dashboard)")
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"leither: warning: listening on {host}, not only on this machine",
              file=sys.stderr)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
