"""The app behind a reverse proxy: whose X-Forwarded-For, -Proto and -Host headers are believed.

A proxy that terminates TLS (nginx, docs/deployment.md) reaches the app over plain http from its own address; the
browser's scheme, host and address arrive in X-Forwarded-* headers. They are believed only from the addresses in
`trusted_proxies` (zvonok.yaml), checked by aio-libs' aiohttp-remotes (one proxy hop, one address in each header),
and then every check that reads `request.scheme`, `.host`, `.secure` or `.remote` — the Origin check, Secure
cookies, the login throttle — sees the browser's. From any other address they are ignored: a client that talks
to the app directly cannot claim another address or https. A trusted address that sends none of the headers (a
health check on the same machine) is a direct client too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from ipaddress import ip_address, ip_network
from typing import NoReturn

from aiohttp import hdrs, web
from aiohttp_remotes import XForwardedStrict

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
FORWARDED = (hdrs.X_FORWARDED_FOR, hdrs.X_FORWARDED_PROTO, hdrs.X_FORWARDED_HOST)


class _Strict(XForwardedStrict):
    async def raise_error(self, request: web.Request) -> NoReturn:
        raise web.HTTPBadRequest(reason="заголовки X-Forwarded-* от прокси не разобраны: проверьте настройку прокси")


def forwarded(trusted: Sequence[str]) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    """A middleware that takes the client's scheme, host and address from the trusted proxies' headers."""
    networks = [ip_network(n) for n in trusted]
    strict = _Strict([networks])

    def from_proxy(request: web.Request) -> bool:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        if not peer or not isinstance(peer, tuple):
            return False  # a Unix socket: no address to trust
        try:
            address = ip_address(peer[0])
        except ValueError:
            return False
        return any(address in n for n in networks)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if from_proxy(request) and any(h in request.headers for h in FORWARDED):
            return await strict.middleware(request, handler)
        return await handler(request)

    return middleware
