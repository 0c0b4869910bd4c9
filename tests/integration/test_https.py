"""``chatrt serve --ssl-certfile --ssl-keyfile`` serves HTTPS itself, no proxy in front."""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support.servers import free_port
from tests.support.wait import poll_until

pytestmark = pytest.mark.integration


def _self_signed(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    return cert, key


def test_serve_speaks_https_with_the_given_certificate(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    port = free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("CHATRT_", "PICCOLO_"))}
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "chatrt", "serve", "--port", str(port),
             "--ssl-certfile", str(cert), "--ssl-keyfile", str(key)],
            cwd=tmp_path,
            env=clean,
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    trusted = ssl.create_default_context(cafile=str(cert))
    base = f"https://127.0.0.1:{port}"
    try:

        def live() -> bool:
            assert process.poll() is None, log_path.read_text()
            try:
                return httpx.get(f"{base}/health/live", verify=trusted, timeout=2).is_success
            except httpx.TransportError:
                return False

        poll_until(live, within_s=30)
        response = httpx.get(f"{base}/health/live", verify=trusted, timeout=5)
        assert response.status_code == 200
        assert response.json() == {"status": "ok"}
        assert response.url.scheme == "https"
        # Without trusting that certificate the handshake is refused: it really is TLS.
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{base}/health/live", timeout=5)
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{port}/health/live", timeout=5)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        finally:
            if process.poll() is None:
                process.kill()


def test_a_certificate_without_its_key_is_refused(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "chatrt", "serve", "--ssl-certfile", str(tmp_path / "c.pem")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "--ssl-keyfile" in done.stderr
