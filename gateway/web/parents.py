"""The pages a parent reaches from a letter, without logging in: «Ознакомлен» and «Отписаться».

A link is signed and expires (gateway.web.links). Opening it (GET) only shows a page with one button: mail
services open links in letters by themselves to scan them, and such a visit must not acknowledge or unsubscribe
anyone. The button (POST) records it; so does the mail client's one-click unsubscribe (RFC 8058: a POST with
`List-Unsubscribe=One-Click`). Both are idempotent. Nothing on these pages names the family or the child.
"""

from __future__ import annotations

from aiohttp import web

from gateway.errors import NotFound
from gateway.store.base import LetterRow
from gateway.web import links
from gateway.web.app import SETTINGS, render
from gateway.webhooks import GATEWAY


async def _letter(request: web.Request, purpose: str) -> LetterRow:
    gateway = request.app[GATEWAY]
    try:
        delivery_id = links.verify(
            request.app[SETTINGS].secret, purpose, request.match_info["token"], gateway.clock.now()
        )
    except links.LinkError as exc:
        raise web.HTTPBadRequest(reason=str(exc)) from None
    letter = await gateway.store.letter(delivery_id)
    if letter is None:
        raise NotFound("письмо по этой ссылке не найдено")
    return letter


def _school_name(request: web.Request, letter: LetterRow) -> str:
    school = request.app[GATEWAY].config.schools.get(letter.school_id)
    return school.name if school else ""


async def ack_form(request: web.Request) -> web.Response:
    letter = await _letter(request, links.ACK)
    return render(
        request, "parent_ack.html", {"letter": letter, "school": _school_name(request, letter), "done": False}
    )


async def ack(request: web.Request) -> web.Response:
    letter = await _letter(request, links.ACK)
    await request.app[GATEWAY].store.acknowledge(letter.delivery_id, request.app[GATEWAY].clock.now())
    return render(request, "parent_ack.html", {"letter": letter, "school": _school_name(request, letter), "done": True})


async def unsubscribe_form(request: web.Request) -> web.Response:
    letter = await _letter(request, links.UNSUBSCRIBE)
    context = {"letter": letter, "school": _school_name(request, letter), "done": letter.opted_out}
    return render(request, "parent_unsubscribe.html", context)


async def unsubscribe(request: web.Request) -> web.Response:
    letter = await _letter(request, links.UNSUBSCRIBE)
    gateway = request.app[GATEWAY]
    await gateway.store.opt_out(letter.school_id, letter.target, gateway.clock.now())
    context = {"letter": letter, "school": _school_name(request, letter), "done": True}
    return render(request, "parent_unsubscribe.html", context)
