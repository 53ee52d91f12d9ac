"""Private Redis topologies for the tests: a 3-primary Redis Cluster, a Sentinel over a primary
and its replica. Real ``redis-server`` processes on free loopback ports, in a temporary
directory, no persistence; a node can be stopped and started again on its port.

Without ``redis-server`` and ``redis-cli`` the tests that need them skip (fail with
``GATEWAY_REQUIRE_REDIS=1``, as ``redis_support`` says).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis

from tests.support.redis_servers import HOW_TO_GET_ONE, answers, unavailable

_START_S = 20.0


def binaries() -> tuple[str, str]:
    """``redis-server`` and ``redis-cli``, or skip (fail in CI)."""
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if server is None or cli is None:
        unavailable(
            f"no redis-server and redis-cli on PATH for a private cluster: {HOW_TO_GET_ONE}"
        )
    assert server is not None and cli is not None
    return server, cli


def cluster_ports(count: int) -> list[int]:
    """Free ports whose cluster bus port (port + 10000) is free too."""
    ports: list[int] = []
    while len(ports) < count:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port >= 55_000 or port in ports:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10_000))
            except OSError:
                continue
        ports.append(port)
    return ports


def _wait(condition: object, what: str, seconds: float = _START_S) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} within {seconds:.0f} s")
        time.sleep(0.05)


class Node:
    """One ``redis-server`` with fixed arguments, restartable on the same port and files."""

    def __init__(
        self, binary: str, port: int, directory: Path, args: list[str], config: str | None = None
    ) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self._command = [binary, *([config] if config else []), "--port", str(port),
                         "--bind", "127.0.0.1", "--dir", str(directory), *args]  # fmt: skip
        self._log = directory / f"redis-{port}.log"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self._log.open("ab") as log:
            self._process = subprocess.Popen(self._command, stdout=log, stderr=log)
        _wait(lambda: answers(self.url), f"redis-server on port {self.port} did not answer")

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            self._process.wait(timeout=10)
        self._process = None


class LocalCluster:
    """Three primaries, no replicas, slots split evenly by ``redis-cli --cluster create``.

    ``cluster-require-full-coverage no``: while one primary is down, the slots of the
    others are still served, as an operator running without replicas would configure.
    """

    def __init__(self, directory: Path, size: int = 3) -> None:
        server, self._cli = binaries()
        self.nodes = [
            Node(server, port, directory, ["--cluster-enabled", "yes",
                 "--cluster-config-file", f"nodes-{port}.conf", "--cluster-node-timeout", "5000",
                 "--cluster-require-full-coverage", "no", "--save", "", "--appendonly", "no"])
            for port in cluster_ports(size)
        ]  # fmt: skip
        self.url = self.nodes[0].url

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        subprocess.run(
            [self._cli, "--cluster", "create", *addresses, "--cluster-replicas", "0",
             "--cluster-yes"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        _wait(self.healthy, "the cluster did not reach cluster_state:ok")

    def healthy(self) -> bool:
        for node in self.nodes:
            try:
                with redis.Redis(port=node.port, socket_timeout=1) as client:
                    info = client.execute_command("CLUSTER", "INFO")
            except (redis.RedisError, OSError):
                return False
            text = info.decode() if isinstance(info, bytes) else str(info)
            if "cluster_state:ok" not in text or "cluster_known_nodes:3" not in text:
                return False
        return True

    def node_of(self, key: str) -> Node:
        """The primary serving ``key``'s slot."""
        with redis.Redis(port=self.nodes[0].port) as client:
            slot = int(client.execute_command("CLUSTER", "KEYSLOT", key))
            for start, end, primary, *_ in client.execute_command("CLUSTER", "SLOTS"):
                if start <= slot <= end:
                    port = int(primary[1])
                    return next(node for node in self.nodes if node.port == port)
        raise LookupError(key)

    def restart(self, node: Node) -> None:
        """Start a stopped node again (same port and nodes.conf) and wait for the cluster."""
        node.start()
        _wait(self.healthy, "the cluster did not recover")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


class LocalSentinel:
    """A primary, its replica and one Sentinel watching them as ``SERVICE`` (quorum 1),
    quick to fail over (the primary is down after one second without an answer)."""

    SERVICE = "gwtest"

    def __init__(self, directory: Path) -> None:
        server, _ = binaries()
        primary_port, replica_port, sentinel_port = cluster_ports(3)
        plain = ["--save", "", "--appendonly", "no", "--repl-diskless-sync-delay", "0"]
        self.primary = Node(server, primary_port, directory, plain)
        replica_of = ["--replicaof", "127.0.0.1", str(primary_port)]
        self.replica = Node(server, replica_port, directory, plain + replica_of)
        conf = directory / "sentinel.conf"
        conf.write_text(
            f"sentinel monitor {self.SERVICE} 127.0.0.1 {primary_port} 1\n"
            f"sentinel down-after-milliseconds {self.SERVICE} 1000\n"
            f"sentinel failover-timeout {self.SERVICE} 5000\n"
        )
        self.sentinel = Node(server, sentinel_port, directory, ["--sentinel"], str(conf))
        self.url = f"redis://127.0.0.1:{sentinel_port}/0"

    def start(self) -> None:
        self.primary.start()
        self.replica.start()
        _wait(self._replica_in_sync, "the replica did not sync")
        self.sentinel.start()

    def primary_port(self) -> int:
        with redis.Redis(port=self.sentinel.port, socket_timeout=1) as client:
            host_port = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.SERVICE)
        return int(host_port[1])

    def stop_primary(self) -> None:
        """Stop the primary, once the Sentinel knows the replica it can promote."""
        _wait(lambda: bool(self._sentinel_replicas()), "the sentinel did not find the replica")
        self.primary.stop()

    def wait_failover(self) -> None:
        """Wait until the Sentinel has promoted the replica and names it as a healthy primary."""
        _wait(self._switched, "no failover", 30)
        _wait(self._promoted, "the replica did not become primary", 30)

    def stop(self) -> None:
        for node in (self.sentinel, self.replica, self.primary):
            node.stop()

    def _switched(self) -> bool:
        with redis.Redis(port=self.sentinel.port, socket_timeout=1) as client:
            state = client.sentinel_masters()[self.SERVICE]
        healthy = not state["is_sdown"] and not state["is_odown"]
        return bool(healthy and int(state["port"]) == self.replica.port)

    def _replica_in_sync(self) -> bool:
        with redis.Redis(port=self.replica.port) as client:
            return bool(client.info("replication").get("master_link_status") == "up")

    def _sentinel_replicas(self) -> list[object]:
        with redis.Redis(port=self.sentinel.port, socket_timeout=1) as client:
            return list(client.execute_command("SENTINEL", "REPLICAS", self.SERVICE))

    def _promoted(self) -> bool:
        with redis.Redis(port=self.replica.port) as client:
            return bool(client.info("replication").get("role") == "master")


def delete_cluster_prefix(url: str, prefix: str) -> None:
    """Delete the keys under ``prefix`` on every node of the cluster at ``url``."""
    with redis.RedisCluster.from_url(url) as client:
        for key in list(client.scan_iter(match=f"{prefix}*", count=1000)):
            client.delete(key)
