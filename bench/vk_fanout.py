"""Benchmark: one announcement fanned out to 2,000 VK chats on one community token.

Runs VkChannel against the VK emulator (on 127.0.0.1) with the emulator enforcing VK's real 20 rps per token,
twice:

* batched: `send_many` of all 2,000 messages, 25 messages.send per `execute` (one rate-limit token each);
* single: one messages.send per message (`send`, concurrently, paced by the token bucket), measured on
  200 chats because the floor makes 2,000 take 100 s.

The floor is VK's limit with one call per message: 2,000 / 20 rps = 100 s. Results go to
bench/results/vk_fanout.json. Usage: `python bench/vk_fanout.py [--chats 2000] [--single-chats 200]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import time
from pathlib import Path
from typing import Any

from adapters.base import Message, Sent
from adapters.emulators.vk import CHAT_PEER_OFFSET, VkEmulator
from adapters.vk import VkChannel

TOKEN = "vk1.a.bench-community-token"
GROUP = 1
VK_RPS = 20
CLIENT_RPS = 18.0  # VkChannel's default: a little under VK's 20
RESULTS = Path(__file__).resolve().parent / "results" / "vk_fanout.json"

TEXT = (
    "Уважаемые родители! В связи с плановыми работами на теплотрассе 14 ноября занятия в 1–11 классах "
    "начинаются в 10:00. Первый урок переносится на седьмой, расписание остальных уроков сохраняется. "
    "Просим обеспечить явку учащихся к 9:45. Группа продлённого дня работает в обычном режиме. "
    "Столовая открывается в 9:30. По вопросам обращайтесь к классному руководителю."
)


def announcement(chat: int, run: str) -> Message:
    return Message(
        key=f"bench-{run}/chat-{chat}",
        account="school",
        target=str(CHAT_PEER_OFFSET + chat),
        school="МБОУ СОШ № 57",
        kind="schedule_change",
        kind_label="Изменение расписания",
        title="Начало занятий 14 ноября",
        text=TEXT,
        reference="№ 2026-11-118",
    )


async def run_batched(emu: VkEmulator, chats: int) -> dict[str, Any]:
    channel = VkChannel({"school": TOKEN}, base_url=emu.base_url, rate=CLIENT_RPS)
    requests_before = emu.requests(TOKEN)
    errors_before = emu.rate_limit_errors(TOKEN)
    try:
        started = time.perf_counter()
        outcomes = await channel.send_many([announcement(chat, "batched") for chat in range(1, chats + 1)])
        elapsed = time.perf_counter() - started
    finally:
        await channel.aclose()
    delivered = sum(isinstance(o, Sent) for o in outcomes)
    return {
        "mode": "execute (25 messages.send per request)",
        "messages": chats,
        "delivered": delivered,
        "seconds": round(elapsed, 3),
        "messages_per_second": round(delivered / elapsed, 1),
        "http_requests": emu.requests(TOKEN) - requests_before,
        "error_6_answers": emu.rate_limit_errors(TOKEN) - errors_before,
    }


async def run_single(emu: VkEmulator, chats: int) -> dict[str, Any]:
    channel = VkChannel({"school": TOKEN}, base_url=emu.base_url, rate=CLIENT_RPS)
    requests_before = emu.requests(TOKEN)
    errors_before = emu.rate_limit_errors(TOKEN)
    try:
        started = time.perf_counter()
        results = await asyncio.gather(
            *(channel.send(announcement(chat, "single")) for chat in range(1, chats + 1)), return_exceptions=True
        )
        elapsed = time.perf_counter() - started
    finally:
        await channel.aclose()
    delivered = sum(isinstance(r, Sent) for r in results)
    return {
        "mode": "one messages.send per message",
        "messages": chats,
        "delivered": delivered,
        "seconds": round(elapsed, 3),
        "messages_per_second": round(delivered / elapsed, 1),
        "http_requests": emu.requests(TOKEN) - requests_before,
        "error_6_answers": emu.rate_limit_errors(TOKEN) - errors_before,
    }


async def main(chats: int, single_chats: int) -> dict[str, Any]:
    async with VkEmulator(rate_limit=VK_RPS) as emu:
        emu.add_community(TOKEN, GROUP)
        for chat in range(1, chats + 1):
            emu.add_chat(chat, f"Класс {chat}, родители")
        batched = await run_batched(emu, chats)
        await asyncio.sleep(1.1)  # let the emulator's one-second window empty
        single = await run_single(emu, min(single_chats, chats))
        exactly_once = all(len(emu.messages(CHAT_PEER_OFFSET + c)) == 1 for c in range(single_chats + 1, chats + 1))

    floor_seconds = chats / VK_RPS
    return {
        "benchmark": "vk_fanout",
        "chats": chats,
        "emulator_rate_limit_rps": VK_RPS,
        "client_rate_rps": CLIENT_RPS,
        "floor": {
            "description": f"{chats} single calls at {VK_RPS} rps",
            "seconds": floor_seconds,
            "messages_per_second": float(VK_RPS),
        },
        "batched": batched,
        "single": single,
        "batched_speedup_vs_floor": round(floor_seconds / batched["seconds"], 1),
        "batched_speedup_vs_single": round(batched["messages_per_second"] / single["messages_per_second"], 1),
        "single_share_of_floor_rate": round(single["messages_per_second"] / VK_RPS, 2),
        "each_batched_chat_got_exactly_one": exactly_once,
        "target_met": floor_seconds / batched["seconds"] >= 10,
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {platform.system()}",
    }


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--chats", type=int, default=2000)
    parser.add_argument("--single-chats", type=int, default=200)
    args = parser.parse_args()
    result = asyncio.run(main(args.chats, args.single_chats))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    batched, single = result["batched"], result["single"]
    print(
        f"VK fan-out to {result['chats']} chats, one token, emulator at {VK_RPS} rps\n"
        f"  batched (execute): {batched['delivered']}/{batched['messages']} in {batched['seconds']} s"
        f" = {batched['messages_per_second']} msg/s, {batched['http_requests']} requests,"
        f" {batched['error_6_answers']} error-6\n"
        f"  single calls:      {single['delivered']}/{single['messages']} in {single['seconds']} s"
        f" = {single['messages_per_second']} msg/s, {single['error_6_answers']} error-6\n"
        f"  floor: {result['floor']['seconds']} s for {result['chats']} single calls;"
        f" batched is {result['batched_speedup_vs_floor']}x faster than the floor"
        f" ({result['batched_speedup_vs_single']}x the single-call rate);"
        f" target >= 10x {'met' if result['target_met'] else 'MISSED'}\n"
        f"  results: {RESULTS}"
    )


if __name__ == "__main__":
    cli()
