"""A webhook receiver on loopback: keeps every JSON body posted to it (notification tests)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, HTTPException, Request


class Receiver:
    def __init__(self, status_code: int = 200) -> None:
        self.posts: list[dict[str, Any]] = []
        self.app = FastAPI()

        @self.app.post("/hook")
        async def hook(request: Request) -> dict[str, bool]:
            self.posts.append(await request.json())
            if status_code != 200:
                raise HTTPException(status_code, "the receiver is configured to fail")
            return {"ok": True}
