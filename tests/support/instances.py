"""Real ``chatrt serve`` processes sharing the suite's PostgreSQL and Redis."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from types import TracebackType

import httpx

from tests.support.servers import free_port
from tests.support.wait import poll_until


class Instance:
    """One chatrt process on its own port; stop it gently, or kill -9 it."""

    def __init__(
        self, env: dict[str, str], log_dir: Path, name: str, args: tuple[str, ...] = ()
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.name = name
        self._env = env
        self._args = args
        self.log_path = log_dir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, within_s: float = 30.0) -> None:
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("CHATRT_", "PICCOLO_"))}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "chatrt", "serve", "--port", str(self.port), *self._args],
                env=clean | self._env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        process = self.process

        def ready() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.log_path.read_text()[-3000:]}")
            try:
                return httpx.get(f"{self.url}/health/ready", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        try:
            poll_until(ready, within_s)
        except TimeoutError:
            tail = self.log_path.read_text()[-3000:]
            raise RuntimeError(f"{self.name} did not get ready:\n{tail}") from None

    def terminate(self, within_s: float = 30.0) -> int:
        """SIGTERM, as an orchestrator does; the exit status."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=within_s)

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs at all."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            try:
                self.terminate(within_s=20)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> Instance:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
