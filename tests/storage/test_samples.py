"""Sample rows and objects together, on both databases and both blob backends: saving an
upload, deleting a user's samples (account deletion / anonymous purge), and what a loop
references."""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from storage import samples
from storage.blobs import BlobNotFound, BlobStore
from storage.blobs.local import LocalBlobStore
from storage.blobs.s3 import S3BlobStore, S3Config
from storage.database import Database
from storage.errors import QuotaExceeded, UnreadableAudio
from storage.models import Sample
from storage.users import create_anonymous_user
from tests.audio_fixtures import mp3_bytes, wav_bytes
from tests.conftest import S3_TEST_KEYS, create_s3_bucket

# The first test that needs S3 also waits for moto to start (slow on a busy machine).
pytestmark = pytest.mark.timeout(180)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    async with Database(database_url) as database:
        yield database


@pytest.fixture
async def blobs(
    blob_backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[BlobStore]:
    store: BlobStore
    if blob_backend == "local":
        store = LocalBlobStore(tmp_path / "samples", base_url="http://files.test/files")
    else:
        endpoint = request.getfixturevalue("s3_endpoint")
        bucket = await create_s3_bucket(endpoint)
        store = S3BlobStore(
            S3Config(bucket=bucket, endpoint_url=endpoint, region="us-east-1", **S3_TEST_KEYS)
        )
    async with store:
        yield store


async def new_user(db: Database) -> uuid.UUID:
    async with db.write_session() as session:
        return (await create_anonymous_user(session)).id


async def save(db: Database, blobs: BlobStore, user_id: uuid.UUID, data: bytes, quota: int = 10**9) -> Sample:
    with tempfile.TemporaryFile() as spool:
        spool.write(data)
        return await samples.save_upload(
            db, blobs, user_id=user_id, spool=spool, size=len(data), name="s", quota=quota
        )


async def test_delete_user_samples_removes_rows_and_objects(db: Database, blobs: BlobStore) -> None:
    owner, other = await new_user(db), await new_user(db)
    mine = [await save(db, blobs, owner, wav_bytes(0.1)), await save(db, blobs, owner, mp3_bytes(10))]
    theirs = await save(db, blobs, other, wav_bytes(0.1))
    async with db.write_session() as session:
        assert await samples.delete_user_samples(session, blobs, owner) == 2
    for sample in mine:
        with pytest.raises(BlobNotFound):
            await blobs.stat(sample.storage_key)
    assert (await blobs.stat(theirs.storage_key)).size == theirs.file_size
    async with db.session() as session:
        owners = list((await session.execute(select(Sample.user_id))).scalars())
        assert owners == [other]
        assert await samples.delete_user_samples(session, blobs, owner) == 0


async def test_quota_refusal_and_bad_audio_leave_no_object(db: Database, blobs: BlobStore) -> None:
    owner = await new_user(db)
    wav = wav_bytes(0.1)
    await save(db, blobs, owner, wav, quota=len(wav) + 10)
    with pytest.raises(QuotaExceeded):
        await save(db, blobs, owner, wav, quota=len(wav) + 10)
    with pytest.raises(UnreadableAudio):
        await save(db, blobs, owner, wav[:3000])
    async with db.session() as session:
        assert await session.scalar(select(func.count()).select_from(Sample)) == 1
        assert await samples.bytes_used(session, owner) == len(wav)


@pytest.mark.parametrize("blob_backend", ["local"], indirect=True)
async def test_samples_referenced_resolves_ids_in_order_and_reports_missing(
    db: Database, blobs: BlobStore
) -> None:
    owner = await new_user(db)
    kick = await save(db, blobs, owner, wav_bytes(0.1))
    ghost = uuid.uuid4()
    content = {
        "iconSequence": [
            {"step": 0, "soundId": "drum-kick"},
            {"step": 1, "soundId": f"sample:{ghost}"},
            {"step": 2, "soundId": f"sample:{kick.id}"},
            {"step": 3, "soundId": f"sample:{kick.id}"},
            {"step": 4, "soundId": "sample:not-a-uuid"},
        ]
    }
    stranger = await new_user(db)
    async with db.session() as session:
        refs = await samples.samples_referenced(
            session, content, blobs, loop_owner_id=owner, forked_from=None, reader_id=None
        )
        # In a stranger's loop the owner's sample is as good as unknown, except to its owner.
        in_strangers_loop = await samples.samples_referenced(
            session, content, blobs, loop_owner_id=stranger, forked_from=None, reader_id=stranger
        )
        owner_reading_it = await samples.samples_referenced(
            session, content, blobs, loop_owner_id=stranger, forked_from=None, reader_id=owner
        )
    assert [(r.id, r.missing) for r in refs] == [
        (str(ghost), True),
        (str(kick.id), False),
        ("not-a-uuid", True),
    ]
    assert refs[1].url == await blobs.url(kick.storage_key)
    assert refs[1].duration == pytest.approx(0.1)
    assert [(r.id, r.name, r.url, r.missing) for r in in_strangers_loop][1] == (
        str(kick.id),
        None,
        None,
        True,
    )
    assert [r.missing for r in owner_reading_it] == [True, False, True]
    async with db.session() as session:
        assert (
            await samples.samples_referenced(
                session, {"iconSequence": []}, blobs, loop_owner_id=owner, forked_from=None, reader_id=None
            )
            == []
        )


@pytest.mark.parametrize(
    ("raw", "filename", "expected"),
    [
        (None, "Kick 01.wav", "Kick 01"),
        ("  My   snare ", "x.wav", "My snare"),
        ("", "dir\\sub\\hat.mp3", "hat"),
        ("a\u0000b\u202ec\u2028d", None, "a b c d"),
        (None, None, "Untitled sample"),
        ("\u200b\u200b", None, "Untitled sample"),
        ("e\u0301", None, "\u00e9"),
        ("x" * 500, None, "x" * 100),
    ],
)
def test_display_name(raw: str | None, filename: str | None, expected: str) -> None:
    assert samples.display_name(raw, filename) == expected


def test_keys_are_random_and_typed() -> None:
    keys = {samples.new_key("audio/wav") for _ in range(100)}
    assert len(keys) == 100
    assert all(
        k.startswith("samples/") and k.endswith(".wav") and len(k) == len("samples/") + 36 for k in keys
    )
    assert samples.new_key("audio/mpeg").endswith(".mp3")
