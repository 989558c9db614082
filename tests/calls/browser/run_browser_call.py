"""One voice call from Chromium (matrix-js-sdk) to the echo bot, in a loopback-only world.

Run by ``tests/calls/test_calls_browser.py`` as ``unshare -n`` + ``ip link set lo up``
+ this script, so that Synapse, the bridge, the page server and Chromium share a network
namespace whose only interface is loopback. Prints one JSON line: what the page measured
(``connected``, packets, ``totalAudioEnergy``, the peak frequency it heard, the ICE pair)
and what the bridge logged about the call.

Usage: ``run_browser_call.py BUNDLE.js WORKDIR``.
"""

from __future__ import annotations

import asyncio
import json
import math
import struct
import subprocess
import sys
import wave
from pathlib import Path

from aiohttp import web

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

from anywhere.bridge.testing.stack import Stack  # noqa: E402
from anywhere.bridge.testing.synapse import free_port  # noqa: E402

TONE_HZ = 440
CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--autoplay-policy=no-user-gesture-required",
]


def write_tone(path: Path, seconds: int = 20) -> None:
    """A 440 Hz tone as 48 kHz mono WAV: Chromium's fake microphone plays it in a loop."""
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(48_000)
        step = 2 * math.pi * TONE_HZ / 48_000
        out.writeframes(
            b"".join(
                struct.pack("<h", int(9000 * math.sin(step * i))) for i in range(48_000 * seconds)
            )
        )


async def call_from_browser(bundle: Path, workdir: Path) -> dict:
    stack = Stack(
        workdir,
        ["basics", "policy", "calls"],
        settings={"calls": {"ice_addresses": ["127.0.0.1"], "connect_timeout": 30}},
        bridge_extra={"bridge": {"permissions": {"localhost": "user"}}},
    )
    await asyncio.to_thread(stack.start)
    chromium = None
    runner = None
    person = None
    try:
        person = await stack.user()
        room = await person.dm(stack.bot_id)
        done: asyncio.Future = asyncio.get_running_loop().create_future()
        page_log: list[str] = []

        async def result(request: web.Request) -> web.Response:
            if not done.done():
                done.set_result(json.loads(await request.text()))
            return web.Response(text="ok")

        async def log(request: web.Request) -> web.Response:
            page_log.append(await request.text())
            return web.Response(text="ok")

        app = web.Application()
        app.router.add_get("/", lambda r: web.Response(text=PAGE, content_type="text/html"))
        app.router.add_get("/bundle.js", lambda r: web.FileResponse(bundle))
        app.router.add_post("/result", result)
        app.router.add_post("/log", log)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()

        tone = workdir / "tone.wav"
        write_tone(tone)
        query = "&".join(
            f"{k}={v}"
            for k, v in {
                "hs": stack.synapse.url,
                "token": person.client.access_token,
                "user": person.user_id,
                "device": person.client.device_id,
                "room": room,
                "bot": stack.bot_id,
            }.items()
        )
        chromium = subprocess.Popen(
            [
                "chromium",
                *CHROMIUM_FLAGS,
                f"--use-file-for-fake-audio-capture={tone}",
                f"--user-data-dir={workdir / 'chromium-profile'}",
                f"http://127.0.0.1:{port}/?{query}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(workdir / "chromium.log", "wb"),  # noqa: SIM115
        )
        try:
            measured = await asyncio.wait_for(done, 90)
        except TimeoutError:
            measured = {"error": "the page reported nothing within 90 s"}
        await asyncio.sleep(1.5)  # the bridge handles the hang-up and posts its report
        bridge_log = stack.bridge.log_path.read_text("utf-8", "replace")
        await person.sync_once()
        reports = [
            e["content"].get("body", "")
            for e in person.timeline.get(room, [])
            if "Call quality test" in str(e.get("content", {}).get("body"))
        ]
        return {
            "page": measured,
            "page_log": page_log,
            "bridge_answered": "call answered" in bridge_log,
            "quality_reports": reports,
        }
    finally:
        if chromium is not None:
            chromium.kill()
            chromium.wait(10)
        if runner is not None:
            await runner.cleanup()
        if person is not None:
            await person.close()
        await asyncio.to_thread(stack.stop)


PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Anywhere call test</title></head>
<body><script type="module" src="/bundle.js"></script></body></html>
"""


def main() -> int:
    bundle, workdir = Path(sys.argv[1]), Path(sys.argv[2])
    print(json.dumps(asyncio.run(call_from_browser(bundle, workdir))), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
