"""Fixtures for the dev server's tests: MONGOSHIFT_TEST_MONGO (set by ops/dev-mongo/test) names the server under test;
tests that need a server of their own (restarts, a short history) start one with `spawn`."""
import os
import socket
import subprocess
import sys
import uuid

import pytest
from pymongo import MongoClient

HERE = os.path.dirname(os.path.abspath(__file__))
SERVER = os.path.join(os.path.dirname(HERE), "server.py")


@pytest.fixture(scope="session")
def uri():
    value = os.environ.get("MONGOSHIFT_TEST_MONGO")
    if not value:
        pytest.exit("MONGOSHIFT_TEST_MONGO is not set: run ops/dev-mongo/test", returncode=2)
    return value


@pytest.fixture(scope="session")
def client(uri):
    c = MongoClient(uri, retryWrites=False, retryReads=False)
    yield c
    c.close()


@pytest.fixture
def db(client):
    name = "t_" + uuid.uuid4().hex[:10]
    yield client[name]
    client.drop_database(name)


@pytest.fixture(autouse=True)
def fail_point_off(client):
    yield
    client.admin.command({"configureFailPoint": "failCommand", "mode": "off"})
    client.admin.command({"devMongoRollBack": 1})
    client.admin.command({"configureFailPoint": "stopReplProducer", "mode": "off"})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Spawned:
    def __init__(self, *args):
        self.args, self.port, self.proc = list(args), free_port(), None
        self.start()

    def start(self):
        self.proc = subprocess.Popen([sys.executable, SERVER, "--port", str(self.port), "--replset", "rs0", *self.args],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        line = self.proc.stdout.readline()
        assert line.startswith("ready "), line
        self.uri = line.split(" ", 1)[1].strip()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)

    def client(self, **kw):
        return MongoClient(self.uri, retryWrites=False, **kw)


@pytest.fixture
def spawn():
    servers = []

    def make(*args):
        servers.append(Spawned(*args))
        return servers[-1]
    yield make
    for s in servers:
        s.stop()


def commands(client, name: str) -> int:
    """How many `name` commands the server has received (serverStatus metrics.commands)."""
    return int(client.admin.command("serverStatus")["metrics"]["commands"].get(name, {}).get("total", 0))
