"""The real Mastra template straight through the ``local`` provider (no cloud around it):
``python -m bench.spares [--cache DIR]``. A cold create, then (once the spare is waiting) a create
taking the spare, then three frozen pause/resume rounds; each timed to the app's first authorised 200
(an API call with the sandbox's own token, so a spare answering with nobody's settings would not
count). Needs the npm registry unless ``--cache`` holds a prepared copy. Prints one line per wait."""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from pathlib import Path

import aiohttp

from plugins.sandbox_router.providers.base import Handle, SandboxSpec
from plugins.sandbox_router.providers.local import LocalProvider
from plugins.sandbox_router.template import BUNDLED_TEMPLATE_DIR


async def authorised(provider: LocalProvider, handle: Handle, token: str, since: float) -> float:
    url = provider.endpoint(handle).base_url / "api/mastra/agents"
    async with aiohttp.ClientSession() as http:
        while time.monotonic() - since < 600:
            try:
                async with http.get(url, headers={"x-mastra-auth-token": token}) as answer:
                    if answer.status == 200:
                        return time.monotonic() - since
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.02)
    raise RuntimeError("no authorised answer within 600 s")


def spec(user: str) -> SandboxSpec:
    return SandboxSpec(user, {"USER_ID": user, "MASTRA_AUTH_TOKEN": f"token-of-{user}"})


async def main(cache: Path, root: Path) -> None:
    provider = LocalProvider(
        root, BUNDLED_TEMPLATE_DIR, cache, stop_grace=2, bwrap=False, freeze=True, spares=1, spare_delay=0
    )
    try:
        began = time.monotonic()
        first = await provider.create(spec("a"), lambda _: None)
        took = await authorised(provider, first, "token-of-a", began)
        print(f"cold create -> authorised 200: {took:.1f} s")
        began = time.monotonic()
        while not list(root.glob("*/home/.sandbox-env.json.waiting")):
            await asyncio.sleep(0.2)
        print(f"  (the spare was waiting {time.monotonic() - began:.1f} s later)")
        provider.spare_delay = 3600  # no new spare bundling beside what is measured next
        began = time.monotonic()
        second = await provider.create(spec("b"), lambda _: None)
        took = await authorised(provider, second, "token-of-b", began)
        print(f"create taking the spare -> authorised 200: {took:.2f} s")
        for n in range(3):
            await provider.pause(second)
            await asyncio.sleep(1)
            began = time.monotonic()
            second = await provider.resume(second, lambda _: None)
            took = await authorised(provider, second, "token-of-b", began)
            print(f"frozen resume #{n + 1} -> authorised 200: {took * 1000:.0f} ms")
    finally:
        await provider.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cache", type=Path, help="a template cache to reuse (default: a fresh one)")
    options = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="bench-spares-"))
    try:
        asyncio.run(main(options.cache or scratch / "cache", scratch / "sandboxes"))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
