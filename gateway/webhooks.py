"""The HTTP endpoint MAX calls with the bot's updates: `POST /webhooks/max/{school_id}`.

MAX signs nothing; it sends the secret given at subscription in `X-Max-Bot-Api-Secret`, so the secret is
compared in constant time and a wrong one changes nothing. MAX wants a 200 within 30 s and retries otherwise
(up to 8 h), and may deliver an update twice: recording an update is idempotent. In production MAX calls only
HTTPS on port 443 with a trusted certificate: put `zvonok serve` behind a reverse proxy that terminates TLS.
"""

from __future__ import annotations

import hmac
import logging
from typing import TYPE_CHECKING

from aiohttp import web

from gateway import jsontext
from gateway.chats import apply_max_update

if TYPE_CHECKING:
    from gateway.app import Gateway

log = logging.getLogger("zvonok.webhooks")

GATEWAY: web.AppKey[Gateway] = web.AppKey("gateway")
SECRET_HEADER = "X-Max-Bot-Api-Secret"  # noqa: S105 - a header name
MAX_BODY = 64 * 1024


def add_routes(app: web.Application, gateway: Gateway) -> None:
    app[GATEWAY] = gateway
    app.router.add_post("/webhooks/max/{school_id}", max_update)


async def max_update(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    school_id = request.match_info["school_id"]
    secret = gateway.config.webhook_secrets.get(school_id, "")
    given = request.headers.get(SECRET_HEADER, "")
    if not secret or not hmac.compare_digest(secret.encode(), given.encode()):
        return _error(401, "неверный секрет вебхука")
    if request.content_length is not None and request.content_length > MAX_BODY:
        return _error(413, "слишком большой запрос")
    try:
        update = jsontext.loads(await request.content.read(MAX_BODY + 1))
    except ValueError:
        return _error(400, f"тело запроса — не JSON или вложено глубже {jsontext.MAX_DEPTH} уровней")
    if not isinstance(update, dict):
        return _error(400, "ожидается объект Update")
    school = gateway.config.school(school_id)
    done = await apply_max_update(gateway.store, school, update, gateway.clock.now())
    if done:
        log.info("school %s: %s", school_id, done)
        gateway.dispatcher.wake()
    return web.json_response({"ok": True})


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)
