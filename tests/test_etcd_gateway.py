"""The etcd gateway client against a real etcd on loopback: reads, transactions, watches,
failover, timeouts, authentication and TLS."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from etcd_server import EtcdServer, free_port

from sla_planner.connectors.etcd_gateway import EtcdClient
from sla_planner.errors import EtcdError


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdServer]:
    server = EtcdServer(tmp_path_factory.mktemp("etcd-gateway") / "data")
    server.start()
    yield server
    server.stop()


def test_put_get_prefix_and_txn_guard(etcd: EtcdServer) -> None:
    async def scenario() -> None:
        client = EtcdClient(etcd.url)
        try:
            first = await client.put("t1/a", b"1")
            written, revision = await client.txn({"t1/b": b"2", "t1/c": b"3"}, {"t1/b": 0})
            assert written and revision > first
            rng = await client.get_prefix("t1/")
            assert {kv.key: kv.value for kv in rng.kvs} == {"t1/a": b"1", "t1/b": b"2", "t1/c": b"3"}
            # both keys of the transaction carry the same revision: one atomic write
            mods = {kv.key: kv.mod_revision for kv in rng.kvs}
            assert mods["t1/b"] == mods["t1/c"] == revision
            # a stale guard writes nothing
            written, _ = await client.txn({"t1/b": b"X"}, {"t1/b": 0})
            assert not written
            assert (await client.get("t1/b")) is not None
            assert (await client.get("t1/b")).value == b"2"  # type: ignore[union-attr]
            assert await client.get("t1/missing") is None
            assert (await client.get_prefix("t1/a")).kvs[0].key == "t1/a"  # prefix, not a range
        finally:
            await client.close()

    run(scenario())


def test_watch_reports_changes_times_out_and_sees_compaction(etcd: EtcdServer) -> None:
    async def scenario() -> None:
        client = EtcdClient(etcd.url)
        try:
            start = (await client.get_prefix("t2/")).revision + 1
            watch = asyncio.create_task(client.watch_prefix("t2/", start, 10.0))
            await client.put("t2/x", b"1")
            result = await watch
            assert result.kind == "events" and result.keys == ("t2/x",)
            # a change made before the watch started is still seen (start revision)
            await client.put("t2/y", b"1")
            assert (await client.watch_prefix("t2/", start + 1, 5.0)).keys == ("t2/y",)
            began = time.monotonic()
            rev = (await client.get_prefix("t2/")).revision
            timed_out = await client.watch_prefix("t2/", rev + 1, 0.3)
            assert timed_out.kind == "timeout" and time.monotonic() - began < 3.0
            # history compacted past the start revision
            await client._call("compact", "/kv/compaction", {"revision": str(rev)}, idempotent=True)
            assert (await client.watch_prefix("t2/", start, 5.0)).kind == "compacted"
        finally:
            await client.close()

    run(scenario())


def test_failover_to_the_next_endpoint_and_all_down(etcd: EtcdServer) -> None:
    dead = f"http://127.0.0.1:{free_port()}"

    async def scenario() -> None:
        client = EtcdClient(f"{dead},{etcd.url}", timeout_s=2.0)
        try:
            await client.put("t3/k", b"v")  # connection refused: safe to retry a write
            assert client.endpoint == etcd.url
            assert (await client.get("t3/k")) is not None
        finally:
            await client.close()
        other_dead = f"http://127.0.0.1:{free_port()}"
        nobody = EtcdClient(f"{dead},{other_dead}", timeout_s=1.0)
        try:
            with pytest.raises(EtcdError, match="no endpoint answered") as info:
                await nobody.get_prefix("t3/")
            assert dead in str(info.value) and other_dead in str(info.value)
            with pytest.raises(EtcdError, match="no endpoint answered"):
                await nobody.watch_prefix("t3/", 1, 5.0)
        finally:
            await nobody.close()

    run(scenario())


def test_a_hung_server_times_out_and_a_write_says_it_may_have_applied(tmp_path: Path) -> None:
    server = EtcdServer(tmp_path / "data")
    server.start()
    try:

        async def scenario() -> None:
            client = EtcdClient(server.url, timeout_s=0.5)
            try:
                await client.put("t4/k", b"1")
                server.pause()
                began = time.monotonic()
                with pytest.raises(EtcdError, match="timed out"):
                    await client.get_prefix("t4/")
                with pytest.raises(EtcdError, match="may or may not have been applied"):
                    await client.put("t4/k", b"2")
                assert time.monotonic() - began < 5.0
                server.resume()
                assert (await client.get("t4/k")) is not None
            finally:
                await client.close()

        run(scenario())
    finally:
        server.stop()


def _etcdctl(url: str, *args: str, env_user: str | None = None) -> None:
    binary = shutil.which("etcdctl")
    if binary is None:
        pytest.skip("etcdctl not found (Debian package etcd-client)")
    command = [binary, f"--endpoints={url}", *args]
    if env_user:
        command.insert(1, f"--user={env_user}")
    subprocess.run(command, check=True, capture_output=True, env={"ETCDCTL_API": "3"}, timeout=30)


def test_username_password_authentication_and_token_renewal(tmp_path: Path) -> None:
    server = EtcdServer(tmp_path / "data")
    server.start()
    try:
        _etcdctl(server.url, "user", "add", "root:secret")
        _etcdctl(server.url, "auth", "enable")

        async def scenario() -> None:
            client = EtcdClient(server.url, username="root", password="secret")
            anonymous = EtcdClient(server.url)
            wrong = EtcdClient(server.url, username="root", password="nope")
            try:
                await client.put("t5/k", b"v")
                client._token = "expired-or-revoked"  # etcd rejects it: renewed once
                assert (await client.get("t5/k")) is not None
                client._token = "expired-or-revoked"  # the same for a watch
                start = (await client.get_prefix("t5/")).revision
                assert (await client.watch_prefix("t5/", start, 5.0)).keys == ("t5/k",)
                with pytest.raises(EtcdError, match="etcd watch at .*user name is empty"):
                    await anonymous.watch_prefix("t5/", start, 5.0)
                with pytest.raises(EtcdError, match="etcd put at .*user name is empty"):
                    await anonymous.put("t5/k", b"v")
                with pytest.raises(EtcdError, match="authentication as 'root'"):
                    await wrong.get("t5/k")
            finally:
                for c in (client, anonymous, wrong):
                    await c.close()

        run(scenario())
    finally:
        server.stop()


def _certificates(directory: Path) -> dict[str, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl not found")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=directory, timeout=60)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
            "-days", "1", "-subj", "/CN=test-ca")
    (directory / "server.ext").write_text(
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n"
    )
    (directory / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for name in ("server", "client"):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
                f"{name}.csr", "-subj", f"/CN={name}")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", f"{name}.crt", "-days", "1", "-extfile", f"{name}.ext")
    return {name: directory / name for name in ("ca.crt", "server.crt", "server.key",
                                               "client.crt", "client.key")}


def test_mutual_tls(tmp_path: Path) -> None:
    files = _certificates(tmp_path)
    health = ssl.create_default_context(cafile=str(files["ca.crt"]))
    health.load_cert_chain(files["client.crt"], files["client.key"])
    server = EtcdServer(
        tmp_path / "data",
        scheme="https",
        health_ssl=health,
        extra_args=(
            f"--cert-file={files['server.crt']}",
            f"--key-file={files['server.key']}",
            f"--trusted-ca-file={files['ca.crt']}",
            "--client-cert-auth",
        ),
    )
    server.start()
    try:

        async def scenario() -> None:
            client = EtcdClient.from_env(
                {
                    "ETCD_ENDPOINTS": server.url,
                    "ETCD_AUTH_CA": str(files["ca.crt"]),
                    "ETCD_AUTH_CLIENT_CERT": str(files["client.crt"]),
                    "ETCD_AUTH_CLIENT_KEY": str(files["client.key"]),
                }
            )
            no_cert = EtcdClient(server.url, ca_file=str(files["ca.crt"]), timeout_s=2.0)
            try:
                await client.put("t6/k", b"v")
                assert (await client.get("t6/k")) is not None
                with pytest.raises(EtcdError):
                    await no_cert.get("t6/k")
            finally:
                await client.close()
                await no_cert.close()

        run(scenario())
    finally:
        server.stop()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"timeout_s": 0}, "timeout_s"),
        ({"username": "u"}, "both a username and a password"),
        ({"cert_file": "c.pem"}, "both a certificate and a key"),
        ({"ca_file": "/nonexistent/ca.pem"}, "TLS files"),
    ],
    ids=["zero timeout", "user without password", "cert without key", "missing CA file"],
)
def test_bad_client_options_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EtcdClient("http://127.0.0.1:2379", **kwargs)
