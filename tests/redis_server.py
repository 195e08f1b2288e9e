"""A real `redis-server` (Debian's package) for the tests: started on a temporary Unix socket
(and, when asked, a TCP port or a TLS port), stopped again afterwards. No mock."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

REDIS_SERVER = shutil.which("redis-server")


class RedisServer:
    def __init__(self, directory: Path, *, appendonly: bool = False, extra: list[str] | None = None,
                 port: int = 0) -> None:
        self.directory = directory
        self.socket = directory / "redis.sock"
        self.port = port
        self.args = [
            REDIS_SERVER, "--port", str(port), "--unixsocket", str(self.socket), "--unixsocketperm", "700",
            "--dir", str(directory), "--save", "", "--appendonly", "yes" if appendonly else "no",
            "--appendfsync", "always", "--daemonize", "no", "--logfile", str(directory / "redis.log"),
            *(extra or []),
        ]
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self) -> RedisServer:
        self.proc = subprocess.Popen(self.args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("redis-server exited: " + (self.directory / "redis.log").read_text()[-1500:])
            if self._answers():
                return self
            time.sleep(0.01)
        raise RuntimeError("redis-server did not start within 10 s")

    def _answers(self) -> bool:
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(1)
                s.connect(str(self.socket))
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith((b"+PONG", b"-NOAUTH"))  # -NOAUTH: up, wants a password
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def flush(self) -> None:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(str(self.socket))
            s.sendall(b"FLUSHALL SYNC\r\n")
            assert s.recv(16).startswith(b"+OK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisCluster:
    """A real three-node Redis Cluster on loopback ports (no replicas), made with redis-cli."""

    def __init__(self, directory: Path) -> None:
        self.ports = [_cluster_port() for _ in range(3)]
        self.nodes = []
        for port in self.ports:
            node_dir = directory / str(port)
            node_dir.mkdir()
            self.nodes.append(RedisServer(node_dir, port=port, extra=[
                "--cluster-enabled", "yes", "--cluster-config-file", str(node_dir / "nodes.conf"),
                "--cluster-node-timeout", "5000",
            ]))

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def start(self) -> RedisCluster:
        for node in self.nodes:
            node.start()
        subprocess.run(
            ["redis-cli", "--cluster", "create", *(f"127.0.0.1:{p}" for p in self.ports),
             "--cluster-replicas", "0", "--cluster-yes"],
            check=True, capture_output=True, timeout=60,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            states = [subprocess.run(["redis-cli", "-p", str(p), "cluster", "info"], capture_output=True,
                                     text=True).stdout for p in self.ports]
            if all("cluster_state:ok" in state for state in states):
                return self
            time.sleep(0.1)
        raise RuntimeError("the cluster did not come up")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def _cluster_port() -> int:
    """A free port whose cluster bus port (10,000 higher) can exist too."""
    while True:
        port = free_port()
        if port <= 55535:
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port + 10000))
                except OSError:
                    continue
            return port
