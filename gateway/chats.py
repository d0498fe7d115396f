"""The chat registry: which chats a school has, whether the bot can still post there, and what MAX told us.

Chats come from two places. The configuration names them (`chat_id` / `peer_id` per class). MAX's `GET /chats`
is retired (June 2026), so the other way is the bot's webhook: when someone adds the school's bot to a chat,
MAX sends `bot_added` and the chat is registered, unmapped; the IT admin then says which class and kind it is
(`zvonok chats map`). A mapped chat serves a class whose configuration names no chat of that kind.

A chat dies when MAX says `bot_removed`, when a send answers "chat not found / denied", or when a health
check (`members/me`: is the bot still an admin who may write?) says so. A dead chat's parents are e-mailed
instead, and the admin is alerted until the chat is healthy again.

Health checks run on demand (`zvonok chats check`), every six hours (schedules/jobs.py), and before an
announcement is previewed or posted by staff (the API, the pages, `zvonok announce`), for the audience's chats
whose last check is older than `health_max_age_hours`: the author sees a broken chat before sending, and its
parents are planned as e-mail. Those checks take at most `gateway.app.CHAT_CHECK_SECONDS`: on the morning of a
closure a MAX that does not answer must not hold the post up, and a send that finds a dead chat falls back to
e-mail by itself anyway, within seconds.

A school's webhook and checks speak only for the school's own chats: a chat registered to another school is
left as it is.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from adapters.base import AdapterError, Channel, CredentialError, TargetHealth
from gateway.domain import ChatBinding, ChatKind, School
from gateway.store.base import ChatRow, Store

log = logging.getLogger("zvonok.chats")


def effective_school(school: School, registered: Iterable[ChatRow]) -> School:
    """The school with the chats the admin mapped from webhooks added where the configuration names none."""
    classes = dict(school.classes)
    teachers = school.teachers_chat
    for row in registered:
        if row.source == "config" or not row.kind or row.kind not in ChatKind.__members__.values():
            continue
        kind = ChatKind(row.kind)
        binding = ChatBinding(kind, row.channel, row.address, school.id)
        if kind is ChatKind.TEACHERS:
            teachers = teachers or binding
        elif row.class_name in classes and kind not in classes[row.class_name].chats:
            cls = classes[row.class_name]
            classes[row.class_name] = replace(cls, chats={**cls.chats, kind: binding})
    if classes == school.classes and teachers is school.teachers_chat:
        return school
    return replace(school, classes=classes, teachers_chat=teachers)


@dataclass(frozen=True, slots=True)
class CheckResult:
    binding: ChatBinding
    class_name: str
    health: TargetHealth | None  # None: the check could not be made (see `error`)
    error: str = ""
    changed: bool = False


async def check_chats(
    school: School,
    store: Store,
    channels: Mapping[str, Channel],
    now: datetime,
    *,
    only: Iterable[ChatBinding] | None = None,
    max_age: timedelta | None = None,
) -> list[CheckResult]:
    """Health-check the school's chats (or `only` these), recording each answer; skips fresh ones if `max_age`."""
    targets = list(only) if only is not None else school.chats()
    if max_age is not None:
        checked = {(r.channel, r.address): r.checked_at for r in await store.chats(school.id)}
        targets = [b for b in targets if (at := checked.get((b.channel, b.address))) is None or now - at > max_age]
    class_of = {(c.channel, c.address): name for name, cls in school.classes.items() for c in cls.chats.values()}

    async def one(binding: ChatBinding) -> CheckResult:
        class_name = class_of.get((binding.channel, binding.address), "")
        channel = channels.get(binding.channel)
        if channel is None:
            return CheckResult(binding, class_name, None, "канал не настроен")
        try:
            health = await channel.check(binding.account, binding.address)
        except CredentialError as exc:
            return CheckResult(binding, class_name, None, f"токен бота отклонён: {exc}")
        except AdapterError as exc:
            return CheckResult(binding, class_name, None, f"проверка не удалась: {exc}")
        if health is None:
            return CheckResult(binding, class_name, None, "этот канал не умеет проверять чаты")
        changed = await store.chat_seen(
            school.id,
            binding.channel,
            binding.address,
            alive=health.ok,
            reason="" if health.ok else health.explanation,
            title=health.title,
            source="check",
            now=now,
        )
        return CheckResult(binding, class_name, health, changed=changed)

    return list(await asyncio.gather(*(one(b) for b in targets)))


async def apply_max_update(store: Store, school: School, update: Mapping[str, Any], now: datetime) -> str:
    """Record a MAX webhook update; returns what happened (for the log), "" for types we do not use."""
    kind = update.get("update_type")
    chat_id = update.get("chat_id")
    if kind not in ("bot_added", "bot_removed") or not isinstance(chat_id, int) or isinstance(chat_id, bool):
        return ""
    address = str(chat_id)
    if kind == "bot_added":
        await store.chat_seen(school.id, "max", address, alive=True, reason="", title="", source="webhook", now=now)
        return f"bot added to chat {address}"
    reason = "бот удалён из чата (событие bot_removed от MAX)"
    await store.chat_seen(school.id, "max", address, alive=False, reason=reason, title="", source="webhook", now=now)
    return f"bot removed from chat {address}"
