"""`tvo ui` started as a user starts it, for the tests: `python -m runner ui OUT --port 0` in a
process of its own, its URL read from what it prints, and requests made over real HTTP."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parents[1]
URL_LINE = re.compile(r"http://(127\.0\.0\.1):(\d+)/\?token=([0-9a-f]+)")
START_TIMEOUT_S = 60.0


@dataclass
class UiServer:
    process: subprocess.Popen[str]
    host: str
    port: int
    token: str
    printed: str  # what the command printed up to the URL

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base}/?token={self.token}"

    def request(self, method: str, path: str, *, body: Any = None, token: bool = True,
                headers: dict[str, str] | None = None) -> tuple[int, Any, dict[str, str]]:
        """(status, JSON or text, headers) of one request; the token in its header unless
        `token` is False; `headers` may replace Host, add Origin or Cookie."""
        connection = http.client.HTTPConnection(self.host, self.port, timeout=60)
        sent = {"Host": f"{self.host}:{self.port}"}
        if token:
            sent["X-TVO-Token"] = self.token
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            sent["Content-Type"] = "application/json"
            sent["Content-Length"] = str(len(data))
        sent.update(headers or {})
        connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for key, value in sent.items():
            connection.putheader(key, value)
        connection.endheaders(data)
        response = connection.getresponse()
        raw = response.read()
        answer_headers = {key.lower(): value for key, value in response.getheaders()}
        connection.close()
        if answer_headers.get("content-type", "").startswith("application/json"):
            return response.status, json.loads(raw), answer_headers
        return response.status, raw.decode(errors="replace"), answer_headers

    def get(self, path: str, **options: Any) -> Any:
        """The JSON answer of a GET that must succeed."""
        status, answer, _ = self.request("GET", path, **options)
        assert status == 200, (path, status, answer)
        return answer

    def stop(self) -> str:
        """SIGTERM by pid (uvicorn shuts down gracefully), SIGKILL if it does not; returns what
        it printed after the URL."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        rest = ""
        if self.process.stdout:
            rest = self.process.stdout.read()
            self.process.stdout.close()
        return rest


def start_ui(out_root: Path, *extra: str) -> UiServer:
    """`python -m runner ui OUT_ROOT --port 0`, this checkout first on the path."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]), "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([sys.executable, "-m", "runner", "ui", str(out_root), "--port",
                                "0", *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, env=env, cwd=REPO)
    printed = []
    deadline = time.monotonic() + START_TIMEOUT_S
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        printed.append(line)
        match = URL_LINE.search(line)
        if match:
            host, port, token = match.groups()
            return UiServer(process, host, int(port), token, "".join(printed))
    process.kill()
    process.wait()
    raise AssertionError("tvo ui printed no URL:\n" + "".join(printed))


def cookie_of(headers: dict[str, str]) -> str:
    """The `name=value` part of a response's Set-Cookie."""
    return headers["set-cookie"].split(";", 1)[0]


def netloc(url: str) -> str:
    return urlsplit(url).netloc


def wait_until_gone(pid: int, timeout_s: float) -> bool:
    """Whether process `pid` (not a child of ours) ended within the timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, IndexError):
            return True
        if state == "Z":  # ended; its new parent reaps it
            return True
        time.sleep(0.2)
    return False
