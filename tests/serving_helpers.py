"""Shared by the serving tests: a server on a free 127.0.0.1 port in a thread, a small HTTP
client, and digits drawn as a hand would (strokes, black on white, 280x280)."""
from __future__ import annotations

import asyncio
import http.client
import json
import math
import socket
import threading

import uvicorn
from PIL import Image, ImageDraw

from zoo.serving import http as serving_http


class RunningServer:
    """serving_http.create_app(server) served by uvicorn in a thread, until stop()."""

    def __init__(self, server: serving_http.ModelServer):
        self.server = server
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        config = uvicorn.Config(serving_http.create_app(server), log_level="warning", access_log=False)
        self.uvicorn = uvicorn.Server(config)
        self.thread = threading.Thread(target=lambda: asyncio.run(self.uvicorn.serve(sockets=[self.socket])),
                                       daemon=True)
        self.thread.start()
        for _ in range(200):
            if self.uvicorn.started:
                break
            threading.Event().wait(0.05)
        assert self.uvicorn.started, "the test server did not start"

    def request(self, method: str, path: str, body=None, raw: bytes | None = None, headers=None):
        """(status, parsed JSON or text, headers) of one request on a fresh connection."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        data = raw if raw is not None else None if body is None else json.dumps(body).encode()
        connection.request(method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
        response = connection.getresponse()
        text = response.read()
        connection.close()
        kind = response.getheader("content-type", "")
        value = json.loads(text) if kind.startswith("application/json") else text
        return response.status, value, dict(response.getheaders())

    def stop(self):
        self.uvicorn.should_exit = True
        self.thread.join(timeout=30)
        self.server.close()


def _arc(cx, cy, rx, ry, start, end, steps=24):
    return [(cx + rx * math.cos(math.radians(angle)), cy + ry * math.sin(math.radians(angle)))
            for angle in (start + (end - start) * step / steps for step in range(steps + 1))]


# Pen strokes of each digit on a 280x280 page, as a person might write them.
STROKES = {
    0: [_arc(140, 140, 60, 95, 0, 360)],
    1: [[(150, 45), (150, 235)]],
    2: [_arc(140, 95, 55, 50, 200, 360) + [(190, 115), (90, 235), (200, 235)]],
    3: [_arc(135, 90, 55, 45, 210, 450) + _arc(135, 185, 60, 50, 270, 510)],
    4: [[(170, 235), (170, 45), (80, 170), (205, 170)]],
    5: [[(195, 50), (105, 50), (95, 130)] + _arc(135, 175, 65, 60, 230, 500)],
    6: [[(180, 50), (110, 130)] + _arc(140, 180, 55, 55, 200, 560)],
    7: [[(80, 50), (200, 50), (120, 235)]],
    8: [_arc(140, 90, 45, 45, 0, 360), _arc(140, 185, 55, 50, 0, 360)],
    9: [_arc(140, 95, 50, 50, 0, 360), [(190, 95), (170, 235)]],
}


def drawn_digit(digit: int, size: int = 280, width: int = 22) -> Image.Image:
    """The digit in black pen strokes on a white size x size page (greyscale)."""
    page = Image.new("L", (size, size), 255)
    pen = ImageDraw.Draw(page)
    for line in STROKES[digit]:
        pen.line([(x * size / 280, y * size / 280) for x, y in line], fill=0, width=width, joint="curve")
    return page
