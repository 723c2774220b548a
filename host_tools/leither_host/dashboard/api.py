# The dashboard's JSON routes, registered in one table: each maps a URL onto a read (reads.py, in
# a worker thread), the sampler's snapshot, or a job (jobs.py). Every route sits behind the
# guard in server.py (token, Host and Origin checks). Errors a user can act on come back as
# {"error": message} with status 400 (their request), 404 (nothing there) or 502 (the node).
"""JSON API routes of the dashboard."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from aiohttp import web

from leither.errors import LeitherError
from leither_host.dashboard import reads
from leither_host.dashboard.jobs import Jobs
from leither_host.dashboard.sampler import Sampler
from leither_host.errors import CliError

READ_THREADS = 4  # reads at once (each opens its own session to a node)
MAX_BODY = 16384  # bytes of a POSTed JSON body: parameters only, never content

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ROUTES: list[tuple[str, str, Handler]] = []
SAMPLER: web.AppKey[Sampler] = web.AppKey("sampler", Sampler)
JOBS: web.AppKey[Jobs] = web.AppKey("jobs", Jobs)
POOL: web.AppKey[ThreadPoolExecutor] = web.AppKey("pool", ThreadPoolExecutor)
T = TypeVar("T")


def route(method: str, path: str) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        ROUTES.append((method, path, handler))
        return handler
    return register


def add_routes(app: web.Application) -> None:
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, handler)


def _json(data: Any, status: int = 200) -> web.Response:
    def default(value: Any) -> Any:
        if isinstance(value, (bytes, bytearray)):
            return bytes(value).hex()
        raise TypeError(f"not JSON serialisable: {type(value).__name__}")

    return web.Response(text=json.dumps(data, default=default), status=status,
                        content_type="application/json")


def error(message: str, status: int) -> web.Response:
    return _json({"error": message}, status)


async def _in_thread(request: web.Request, fn: Callable[..., T], *args: Any) -> T:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(request.app[POOL], fn, *args)


async def _read(request: web.Request, fn: Callable[..., Any], *args: Any) -> web.Response:
    """A read's result as JSON; the CLI's one-line errors as {"error": ...}."""
    try:
        return _json(await _in_thread(request, fn, *args))
    except CliError as err:
        return error(str(err), 404 if "no node named" in str(err) else 502)
    except (LeitherError, OSError) as err:
        return error(str(err), 502)


@route("GET", "/api/fleet")
async def fleet(request: web.Request) -> web.Response:
    sampler = request.app[SAMPLER]
    return _json({"nodes": sampler.rows(), "polled_at": sampler.polled_at,
                  "poll_s": sampler.poll_s, "error": sampler.fleet_error})


@route("GET", "/api/nodes/{ref}")
async def node(request: web.Request) -> web.Response:
    return await _read(request, reads.node, request.match_info["ref"])


@route("GET", "/api/nodes/{ref}/mimei/{mid}")
async def versions(request: web.Request) -> web.Response:
    return await _read(request, reads.versions, request.match_info["ref"],
                       request.match_info["mid"])


@route("GET", "/api/nodes/{ref}/mimei/{mid}/content")
async def content(request: web.Request) -> web.StreamResponse:
    version = request.query.get("version", "cur")
    try:
        data, size, filename = await _in_thread(request, reads.download,
                                                request.match_info["ref"],
                                                request.match_info["mid"], version)
    except CliError as err:
        return error(str(err), 400 if str(err).startswith("version:") else 502)
    except (LeitherError, OSError) as err:
        return error(str(err), 502)
    response = web.StreamResponse(headers={
        "Content-Type": "application/octet-stream", "Content-Length": str(size),
        "Content-Disposition": f'attachment; filename="{filename}"'})
    try:
        await response.prepare(request)
        while chunk := data.read(65536):
            await response.write(chunk)
        await response.write_eof()
    finally:
        data.close()
    return response


@route("GET", "/api/nodes/{ref}/pairing")
async def pairing(request: web.Request) -> web.Response:
    return await _read(request, reads.pairing, request.match_info["ref"])


@route("GET", "/api/nodes/{ref}/receipts")
async def node_receipts(request: web.Request) -> web.Response:
    return await _read(request, reads.receipts, request.match_info["ref"])


@route("GET", "/api/nodes/{ref}/history")
async def history(request: web.Request) -> web.Response:
    """Backup progress sampled by the dashboard: [time ms, bytes pushed, pending, on partner]."""
    sampler = request.app[SAMPLER]
    try:
        node = sampler.find(request.match_info["ref"])
    except CliError as err:
        return error(str(err), 404)
    return _json({"id": node.id, "points": sampler.history(node.id),
                  "fields": ["time_ms", "pushed_bytes", "pending_bytes", "partner_bytes"]})


@route("GET", "/api/nodes/{ref}/logs")
async def logs(request: web.Request) -> web.Response:
    """The node's log lines after ?after=SEQ (0: the last ?tail=N), as `leither logs -f`."""
    after, tail = request.query.get("after", "0"), request.query.get("tail", "200")
    if not after.isdigit() or not tail.isdigit() or int(tail) < 1:
        return error("after and tail take whole numbers (tail >= 1)", 400)
    try:
        return _json(await request.app[SAMPLER].log(request.match_info["ref"], int(after),
                                                    int(tail)))
    except CliError as err:
        return error(str(err), 404 if "in the fleet" in str(err) else 409)
    except (LeitherError, OSError) as err:
        return error(str(err), 502)


@route("GET", "/api/orgs")
async def orgs(request: web.Request) -> web.Response:
    return await _read(request, reads.orgs)


@route("GET", "/api/orgs/{org}")
async def balances(request: web.Request) -> web.Response:
    return await _read(request, reads.balances, request.match_info["org"])


@route("GET", "/api/orgs/{org}/proof/{member}")
async def proof(request: web.Request) -> web.Response:
    org, member = request.match_info["org"], request.match_info["member"]
    try:
        bundle, checked = await _in_thread(request, reads.proof, org, member)
    except (CliError, LeitherError) as err:
        return error(str(err), 404)
    name = f"{org}-{checked['member'][:10]}-epoch{checked['epoch']}.proof"
    return web.Response(body=bundle, content_type="application/cbor", headers={
        "Content-Disposition": f'attachment; filename="{name}"',
        "X-Leither-Balance": str(checked["balance"]), "X-Leither-Epoch": str(checked["epoch"])})


@route("GET", "/api/jobs")
async def jobs(request: web.Request) -> web.Response:
    return _json({"jobs": request.app[JOBS].list()})


@route("GET", "/api/jobs/{id}")
async def job(request: web.Request) -> web.Response:
    found = request.app[JOBS].get(int(request.match_info["id"])) \
        if request.match_info["id"].isdigit() else None
    if found is None:
        return error("no such job (the dashboard keeps the last 50)", 404)
    return _json(found.view())


@route("POST", "/api/jobs")
async def start_job(request: web.Request) -> web.Response:
    """Start an action: {"action": "claim", "node": "board1", ...}; 202 with the job."""
    if request.content_type != "application/json":
        return error("send the parameters as application/json", 415)
    if (request.content_length or 0) > MAX_BODY:
        return error(f"a request body over {MAX_BODY} bytes", 413)
    try:
        params = json.loads(await request.text())
    except ValueError as err:
        return error(f"not JSON: {err}", 400)
    if not isinstance(params, dict) or not isinstance(params.get("action"), str):
        return error('give {"action": NAME, ...}', 400)
    try:
        started = request.app[JOBS].start(params["action"], params)
    except CliError as err:
        return error(str(err), 400)
    return _json(started.view(), 202)
