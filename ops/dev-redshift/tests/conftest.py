"""Fixtures: the running stand-in (MONGOSHIFT_TEST_REDSHIFT), its statement log and the S3 emulator."""
import os
import uuid

import boto3
import psycopg
import pytest
from botocore.config import Config

ROLE = "arn:aws:iam::123456789012:role/MongoshiftTest"


def env(name: str) -> str:
    v = os.environ.get(name)
    if not v:
        pytest.exit(f"{name} is not set: run ops/dev-redshift/test", returncode=2)
    return v


@pytest.fixture(scope="session")
def url() -> str:
    return env("MONGOSHIFT_TEST_REDSHIFT")


@pytest.fixture(scope="session")
def backend_url() -> str:
    return env("MONGOSHIFT_TEST_PG")


@pytest.fixture(scope="session")
def s3():
    return boto3.client("s3", endpoint_url=env("MONGOSHIFT_TEST_S3_ENDPOINT"), region_name=os.environ.get("AWS_REGION", "us-east-1"),
                        aws_access_key_id=env("AWS_ACCESS_KEY_ID"), aws_secret_access_key=env("AWS_SECRET_ACCESS_KEY"),
                        config=Config(s3={"addressing_style": "path"}))


@pytest.fixture(scope="session")
def bucket(s3) -> str:
    name = env("MONGOSHIFT_TEST_S3_BUCKET")
    try:
        s3.create_bucket(Bucket=name)
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    except Exception:
        pass
    return name


@pytest.fixture()
def prefix() -> str:
    return f"t-{uuid.uuid4().hex[:10]}/"


@pytest.fixture()
def conn(url):
    c = psycopg.connect(url, autocommit=True)
    yield c
    c.close()


@pytest.fixture()
def table(conn):
    """A fresh table name (dropped afterwards)."""
    name = f"t_{uuid.uuid4().hex[:10]}"
    yield name
    try:
        conn.rollback()
    except Exception:
        pass
    with psycopg.connect(conn.info.dsn, autocommit=True) as c:
        c.execute(f"DROP TABLE IF EXISTS {name}")
