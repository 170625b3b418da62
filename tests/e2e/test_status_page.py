"""End to end: the status page of a real server that has received records, rendered by headless Chromium.

Needs Debian's `chromium` (or `chromium-browser`). When it is missing and we are root on Debian,
it is installed once with apt-get; the test is skipped only when that is impossible.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import httpx
import pytest

from app.status import SECURITY_HEADERS
from tests.e2e.conftest import Server
from tests.samples import audit_event, concatenated, envelope, network_event

WIDTH, HEIGHT = 1200, 900
BROWSER_NAMES = ("chromium", "chromium-browser")
# Without the background-networking flags Chromium keeps dialling Google, which a closed network refuses.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    f"--window-size={WIDTH},{HEIGHT}",
)


def find_browser() -> str | None:
    return next((path for name in BROWSER_NAMES if (path := shutil.which(name))), None)


def install_browser() -> str:
    """Why Chromium could not be installed; empty when it was."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "not root, so apt-get cannot install it"
    if not Path("/etc/debian_version").exists() or shutil.which("apt-get") is None:
        return "not Debian (no apt-get)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
        try:
            subprocess.run(command, env=env, capture_output=True, timeout=600, check=True)
        except (OSError, subprocess.SubprocessError) as exc:
            stderr = getattr(exc, "stderr", None) or b""
            return f"`{' '.join(command)}` failed: {exc} {stderr.decode(errors='replace')[-500:]}".strip()
    return ""


@pytest.fixture(scope="session")
def browser() -> str:
    path = find_browser()
    if path is None:
        reason = install_browser()
        path = find_browser()
        if path is None:
            pytest.skip(f"Chromium is not installed and could not be: {reason or 'not on PATH after apt-get'}")
    return path


def run_browser(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{command} exited {result.returncode}:\n{result.stderr[-3000:]}"
    return result


def read_png(data: bytes) -> tuple[int, int, int, bytes]:
    """(width, height, bytes per pixel, decompressed scanlines) of an 8-bit RGB(A) PNG (RFC 2083)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    offset, chunks = 8, {}
    idat = b""
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind, body = data[offset + 4 : offset + 8], data[offset + 8 : offset + 8 + length]
        assert zlib.crc32(kind + body) == struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])[0]
        idat += body if kind == b"IDAT" else b""
        chunks.setdefault(kind, body)
        offset += 12 + length
    width, height, depth, color_type = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert depth == 8 and color_type in (2, 6), f"unexpected PNG format: depth {depth}, color type {color_type}"
    assert b"IEND" in chunks
    return width, height, 3 if color_type == 2 else 4, zlib.decompress(idat)


def test_status_page_renders_counts_and_last_requests_in_chromium(
    server: Server, client: httpx.Client, browser: str, tmp_path: Path
):
    bad = envelope(network_event("bad"))
    bad["event"]["virtualTraffic"][0]["proto"] = 70000
    network = concatenated([envelope(network_event(f"node{i}")) for i in range(5)] + [bad])
    assert client.post("/v1/tailscale/network", content=network).json()["accepted"] == 5
    assert client.post("/v1/tailscale/audit", content=concatenated([envelope(audit_event())] * 2)).status_code == 200
    assert httpx.post(f"{server.url}/v1/tailscale/audit", content=b"{}").status_code == 401
    page = httpx.get(f"{server.url}/")
    assert page.status_code == 200, "GET / is not served: include app.status.router in create_app"
    assert page.headers["content-security-policy"] == SECURITY_HEADERS["Content-Security-Policy"]

    dom = run_browser(browser, tmp_path / "profile-dom", "--dump-dom", f"{server.url}/").stdout

    assert re.search(r'id="accepted">\s*7\s*<', dom), dom
    assert re.search(r'id="quarantined">\s*1\s*<', dom), dom
    assert "200 OK" in dom and "401 Unauthorized" in dom
    assert "writable" in dom and str(server.data_dir) in dom

    screenshot = tmp_path / "page.png"
    run_browser(browser, tmp_path / "profile-shot", f"--screenshot={screenshot}", f"{server.url}/")

    assert screenshot.is_file()
    width, height, pixel_bytes, scanlines = read_png(screenshot.read_bytes())
    assert (width, height) == (WIDTH, HEIGHT)
    assert len(scanlines) == height * (1 + width * pixel_bytes)
    # A blank page compresses to a handful of byte values (filter bytes and one colour); text,
    # badges and the chart bring dozens.
    assert len(set(scanlines)) > 32, "the screenshot looks blank"
