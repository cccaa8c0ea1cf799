"""The boot server's installer endpoints (added to the app by ``bootserver.make_app``).

- ``GET /install/{mac}/plan``: the node's install plan as sh assignments (see ``install_plan``).
- ``POST /install/{mac}/progress`` (stage, percent, bytes, detail), ``/done`` (seconds), ``/failed`` (stage,
  reason): form-encoded, as busybox ``wget --post-data`` sends them.
- ``GET /install/{mac}/image.tar``: the node's own image, current version, as an uncompressed tar stream (the
  node's link, not the CPU, is the bottleneck; gzip would slow a TCG VM down).

Every one of them needs the node's install token (``install_tokens``, header ``X-Haoscar-Token``): without a
valid token for the node owning that MAC the answer is 403 and nothing is read or changed. ``done`` and
``failed`` revoke the token.

A background task marks installs that stopped reporting as failed (see ``install_progress.expire_stalled``).

A report's body must arrive within ``body_timeout`` (413 over ``body_bytes``), and an image stream the node stops
taking is cut after ``send_timeout`` (``bootserver_limits``): a node cannot hold a connection by dribbling.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from aiohttp import web

from haoscar.db.session import record_event
from haoscar.errors import NotFound, UserError
from haoscar.provision import install_progress, install_tokens
from haoscar.provision.bootserver_limits import BootLimits
from haoscar.provision.image_checksum import tar_argv
from haoscar.provision.images import ImageStore
from haoscar.provision.install_plan import AccountsScript, install_plan, node_for_mac, node_image
from haoscar.provision.netboot_snapshot import Database
from haoscar.provision.slurm_conf import MUNGE_KEY_PATH
from haoscar.spec.types import parse_mac

DB_KEY = web.AppKey("install_db", Database)
STATE_KEY = web.AppKey("install_state_dir", Path)
LIMITS_KEY = web.AppKey("limits", BootLimits)
MUNGE_KEY = web.AppKey("install_munge_key_path", Path)  # where this head keeps the cluster's munge key
# The cluster's accounts, /etc/hosts and keys as one script (``cluster sync``'s, injected by the command that starts
# the server: commands/netboot.serve), run in the new system at install; None: the node gets them at the next sync.
ACCOUNTS_KEY = web.AppKey("install_accounts_script", AccountsScript)
WATCH_INTERVAL = 2.0
CHUNK = 1 << 20

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _user_errors(handler: Handler) -> Handler:
    """UserError -> 400 (404 for unknown things) with the message as the body, never a traceback."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except install_tokens.Forbidden as exc:
            print(f"refused {request.method} {request.path} from {request.remote}: {exc.message}", flush=True)
            raise web.HTTPForbidden(text="forbidden: a valid install token for this node is required\n") from None
        except NotFound as exc:
            raise web.HTTPNotFound(text=f"{exc.message}\n") from None
        except UserError as exc:
            raise web.HTTPBadRequest(text=f"{exc.message}\n") from None

    return wrapped


def _int(form: dict[str, str], key: str, default: int = 0) -> int:
    text = form.get(key, "")
    if not text:
        return default
    try:
        return int(float(text))
    except ValueError:
        raise UserError(f"{key}={text!r} is not a number") from None


def _limits(request: web.Request) -> BootLimits:
    return request.app.get(LIMITS_KEY) or BootLimits()


async def _form(request: web.Request) -> dict[str, str]:
    try:
        async with asyncio.timeout(_limits(request).body_timeout):
            data = await request.post()
    except TimeoutError:
        raise web.HTTPRequestTimeout(text="the request body did not arrive in time\n") from None
    return {key: str(value) for key, value in data.items()}


@_user_errors
async def plan(request: web.Request) -> web.StreamResponse:
    mac = authorize(request.app[DB_KEY], request.match_info["mac"], request.headers.get(install_tokens.HEADER))
    # The first plan of an image version computes its stream's checksum (seconds for a big image): not in the loop.
    app = request.app
    result = await asyncio.to_thread(
        install_plan, app[DB_KEY], app[STATE_KEY], mac, app[MUNGE_KEY], accounts=app.get(ACCOUNTS_KEY)
    )
    return web.Response(text=result.as_shell(), content_type="text/plain")


def authorize(db: Database, mac_text: str, token: str | None) -> str:
    """The MAC (normalised) when ``token`` is the install token of the node owning it; else NotFound / Forbidden."""
    try:
        mac = parse_mac(mac_text)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    with db.session() as session:
        node = node_for_mac(session, mac)[0].name
    install_tokens.check(db, node, token)
    return mac


def _mac(request: web.Request) -> str:
    return authorize(request.app[DB_KEY], request.match_info["mac"], request.headers.get(install_tokens.HEADER))


@_user_errors
async def progress(request: web.Request) -> web.StreamResponse:
    form = await _form(request)
    install_progress.record_progress(
        request.app[DB_KEY],
        request.app[STATE_KEY],
        _mac(request),
        form.get("stage", ""),
        _int(form, "percent"),
        nbytes=_int(form, "bytes"),
        detail=form.get("detail", ""),
    )
    return web.Response(text="ok\n")


@_user_errors
async def done(request: web.Request) -> web.StreamResponse:
    form = await _form(request)
    mac = _mac(request)
    seconds, version = float(_int(form, "seconds")), _int(form, "version", -1)  # the image version it installed
    name = install_progress.record_done(
        request.app[DB_KEY], request.app[STATE_KEY], mac, seconds, image_version=version if version >= 0 else None
    )
    install_tokens.revoke(request.app[DB_KEY], name)
    return web.Response(text=f"{name} installed; it boots from its disk from now on\n")


@_user_errors
async def failed(request: web.Request) -> web.StreamResponse:
    form = await _form(request)
    stage = form.get("stage", "unknown")
    if stage not in install_progress.STAGES:
        stage = "unknown"
    name = install_progress.record_failed(
        request.app[DB_KEY], request.app[STATE_KEY], _mac(request), stage, form.get("reason", "")
    )
    install_tokens.revoke(request.app[DB_KEY], name)  # the installer has stopped; a new boot gets a new token
    return web.Response(text="recorded\n")


@_user_errors
async def image_tar(request: web.Request) -> web.StreamResponse:
    mac = _mac(request)
    name = node_image(request.app[DB_KEY], mac)
    root = ImageStore(request.app[STATE_KEY]).current_root(name)
    proc = await asyncio.create_subprocess_exec(
        *tar_argv(root),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    response = web.StreamResponse(headers={"Content-Type": "application/x-tar"})
    await response.prepare(request)
    started, sent, send_timeout = time.monotonic(), 0, _limits(request).send_timeout
    try:
        while chunk := await proc.stdout.read(CHUNK):
            async with asyncio.timeout(send_timeout):  # a node that stops reading does not hold tar and a socket
                await response.write(chunk)
            sent += len(chunk)
        if await proc.wait() != 0:
            # No closing chunk: the installer sees a broken stream, never a short tar that looks complete.
            print(f"image {name}: tar failed with status {proc.returncode}; stream to {request.remote} cut", flush=True)
            if request.transport is not None:
                request.transport.close()
            return response
        await response.write_eof()
    except ConnectionResetError:  # the node went away (powered off, cable, a proxy): its installer reports it
        print(f"image {name}: {request.remote} closed the stream after {sent} bytes", flush=True)
        return response
    except TimeoutError:
        print(f"image {name}: {request.remote} took nothing for {send_timeout:g} s; stream cut at {sent}", flush=True)
        if request.transport is not None:
            request.transport.abort()
        return response
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        await proc.wait()
    seconds = time.monotonic() - started
    _image_sent(request.app[DB_KEY], name, request.remote or "", sent, seconds)
    return response


def _image_sent(db: Database, name: str, peer: str, sent: int, seconds: float) -> None:
    """An event per complete image stream: how many bytes went to whom how fast (what ``bench install`` reads)."""
    rate = sent / seconds / 1e6 if seconds > 0 else 0.0
    with db.session() as session:
        record_event(
            session,
            "image-sent",
            f"image {name}: {sent / 1e6:.1f} MB to {peer} in {seconds:.2f} s ({rate:.1f} MB/s)",
            data={"image": name, "peer": peer, "bytes": sent, "seconds": round(seconds, 4)},
        )


async def _watch(app: web.Application) -> AsyncIterator[None]:
    """Mark stalled installs failed while the boot server runs."""

    async def loop() -> None:
        while True:
            await asyncio.sleep(WATCH_INTERVAL)
            try:
                install_progress.expire_stalled(app[DB_KEY], app[STATE_KEY])
            except Exception as exc:  # a locked database must not stop the watcher; next round retries
                print(f"install watcher: {exc}")

    task = asyncio.create_task(loop())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def add_install_routes(app: web.Application, db: Database, state_dir: Path) -> None:
    app[DB_KEY] = db
    app[STATE_KEY] = state_dir
    app[MUNGE_KEY] = Path(MUNGE_KEY_PATH)
    app.router.add_get("/install/{mac}/plan", plan)
    app.router.add_post("/install/{mac}/progress", progress)
    app.router.add_post("/install/{mac}/done", done)
    app.router.add_post("/install/{mac}/failed", failed)
    app.router.add_get("/install/{mac}/image.tar", image_tar)
    app.cleanup_ctx.append(_watch)
