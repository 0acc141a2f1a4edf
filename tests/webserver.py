"""A real web server for the remote-input tests: Debian's nginx on 127.0.0.1, serving a folder
with range requests, logging every request's status and bytes.

``/busy/`` serves the same folder behind a request rate limit (2 per second, no burst): a
client reading quickly gets real ``503 Service Temporarily Unavailable`` answers and must
retry.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Nginx", "find_nginx", "start_nginx"]


def find_nginx() -> str | None:
    """nginx on PATH or in /usr/sbin (not on a user's PATH by default)."""
    return shutil.which("nginx") or (
        "/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LogLine:
    """One request in the access log."""

    method: str
    uri: str
    """The request's path and query string."""
    status: int
    body_bytes: int
    range: str


@dataclass
class Nginx:
    """A running nginx."""

    proc: subprocess.Popen[bytes]
    root: Path
    """The folder it serves."""
    url: str
    """``http://127.0.0.1:PORT``."""
    log: Path
    """Its access log."""

    def requests(self) -> list[LogLine]:
        """Every request logged so far."""
        out = []
        if self.log.exists():
            for line in self.log.read_text().splitlines():
                method, uri, status, sent, rng = line.split("\t")
                out.append(LogLine(method, uri, int(status), int(sent), rng))
        return out

    def clear_log(self) -> None:
        """Forget the requests logged so far (nginx keeps appending to the same file)."""
        if self.log.exists():
            with self.log.open("r+") as f:
                f.truncate(0)

    def stop(self) -> None:
        """Stop nginx (fast shutdown) and wait for it."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_nginx(nginx: str, root: Path, work: Path) -> Nginx:
    """Start nginx serving ``root`` on a free port, its files in ``work``."""
    work.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    temp = "\n".join(f"  {k}_temp_path {work}/{k};" for k in
                     ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    user = "user root root;" if os.geteuid() == 0 else ""
    conf = f"""
daemon off;
{user}
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/error.log warn;
events {{ worker_connections 256; }}
http {{
  log_format geomm '$request_method\\t$request_uri\\t$status\\t$body_bytes_sent\\t$http_range';
  access_log {work}/access.log geomm;
{temp}
  types {{ image/tiff tif; application/geopackage+sqlite3 gpkg; }}
  default_type application/octet-stream;
  sendfile on;
  limit_req_zone $binary_remote_addr zone=busy:1m rate=2r/s;
  server {{
    listen 127.0.0.1:{port};
    root {root};
    location /busy/ {{
      alias {root}/;
      limit_req zone=busy;
    }}
  }}
}}
"""
    (work / "nginx.conf").write_text(conf)
    proc = subprocess.Popen([nginx, "-p", str(work), "-c", str(work / "nginx.conf"),
                             "-e", str(work / "error.log")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 15
    while True:
        try:
            urllib.request.urlopen(url + "/", timeout=1).close()
            break
        except urllib.error.HTTPError:
            break  # it answers (403/404 for the bare folder)
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                err = proc.stderr.read().decode() if proc.stderr else ""
                proc.kill()
                raise RuntimeError(f"nginx did not start: {err}") from None
            time.sleep(0.05)
    return Nginx(proc, root, url, work / "access.log")
