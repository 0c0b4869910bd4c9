"""The project's nginx config, rendered as the official image would, run by the test user."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import subprocess
from pathlib import Path
from types import TracebackType

import httpx

from tests.support.servers import free_port
from tests.support.wait import poll_until

TEMPLATE = Path(__file__).parents[2] / "deploy" / "nginx" / "chatrt.conf.template"

# Everything the Debian build would put under /var: here it all lives in the test's folder.
MAIN = """\
daemon off;
worker_processes 1;
pid {folder}/nginx.pid;
error_log {folder}/error.log info;
{user}
events {{ worker_connections 256; }}
http {{
    access_log {folder}/access.log;
    client_body_temp_path {folder}/client_body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
    include {folder}/chatrt.conf;
}}
"""


def nginx_binary() -> str:
    """nginx from PATH or Debian's /usr/sbin (not on a normal user's PATH)."""
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    if found is None:
        raise RuntimeError("nginx is not installed: run scripts/bootstrap dev")
    return found


def render(template: str, values: dict[str, str]) -> str:
    """Fill ``${NAME}`` for exactly these names, like the image's ``envsubst`` with a list."""
    rendered = re.sub(r"\$\{(\w+)\}", lambda m: values.get(m[1], m[0]), template)
    left = re.findall(r"\$\{\w+\}", rendered)
    if left:
        raise ValueError(f"template variables without a value: {left}")
    return rendered


class Nginx:
    """nginx in the foreground on a free port, balancing over ``upstreams`` (host:port)."""

    def __init__(self, folder: Path, upstreams: tuple[str, str]) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        values = {
            "NGINX_LISTEN": f"127.0.0.1:{self.port}",
            "NGINX_UPSTREAM_1": upstreams[0],
            "NGINX_UPSTREAM_2": upstreams[1],
        }
        (folder / "chatrt.conf").write_text(render(TEMPLATE.read_text(), values))
        # As root, nginx would hand its workers to "nobody", who cannot use this folder.
        user = f"user {pwd.getpwuid(os.geteuid()).pw_name};" if os.geteuid() == 0 else ""
        (folder / "nginx.conf").write_text(MAIN.format(folder=folder, user=user))

    @property
    def error_log(self) -> str:
        path = self.folder / "error.log"
        return path.read_text()[-3000:] if path.exists() else ""

    def start(self, within_s: float = 20.0) -> None:
        conf = self.folder / "nginx.conf"
        command = [nginx_binary(), "-p", str(self.folder), "-c", str(conf)]
        # -e: the start-up error log, before nginx.conf is read (default: /var/log/nginx).
        self.process = subprocess.Popen(
            [*command, "-e", str(self.folder / "error.log")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        process = self.process

        def serving() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"nginx exited:\n{self.error_log}")
            try:
                return httpx.get(f"{self.url}/health/live", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        try:
            poll_until(serving, within_s)
        except TimeoutError:
            raise RuntimeError(f"nginx did not serve:\n{self.error_log}") from None

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)  # fast shutdown: open sockets are cut
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def __enter__(self) -> Nginx:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
