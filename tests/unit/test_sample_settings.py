"""Object storage settings: S3_* and the seed's R2_* names, validated at start."""

from __future__ import annotations

import pytest

from settings import ConfigError, Settings


def test_defaults_keep_samples_on_local_disk() -> None:
    s = Settings.from_env({})
    assert s.s3_bucket is None
    assert s.sample_max_bytes == 5 * 1024 * 1024
    assert s.sample_quota_bytes == 104857600
    assert s.clamd_url is None


def test_s3_settings() -> None:
    s = Settings.from_env(
        {
            "S3_BUCKET": "samples",
            "S3_ENDPOINT_URL": "http://127.0.0.1:9000",
            "S3_ACCESS_KEY_ID": "key",
            "S3_SECRET_ACCESS_KEY": "very-secret",
            "S3_REGION": "eu-west-1",
            "S3_PUBLIC_BASE_URL": "https://cdn.example.com/",
            "S3_PRESIGN_SECONDS": "600",
        }
    )
    assert (s.s3_bucket, s.s3_endpoint_url, s.s3_region) == ("samples", "http://127.0.0.1:9000", "eu-west-1")
    assert s.s3_public_base_url == "https://cdn.example.com"
    assert s.s3_presign_seconds == 600
    assert "very-secret" not in repr(s)


def test_r2_names_map_onto_the_s3_settings() -> None:
    s = Settings.from_env(
        {"R2_ACCOUNT_ID": "acct", "R2_ACCESS_KEY_ID": "k", "R2_SECRET_ACCESS_KEY": "s", "R2_BUCKET_NAME": "b"}
    )
    assert s.s3_bucket == "b"
    assert s.s3_endpoint_url == "https://acct.r2.cloudflarestorage.com"
    assert (s.s3_region, s.s3_access_key_id, s.s3_secret_access_key) == ("auto", "k", "s")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"S3_REGION": "x"}, "no S3_BUCKET"),
        ({"R2_ACCOUNT_ID": "a"}, "no S3_BUCKET"),
        ({"S3_BUCKET": "a", "R2_BUCKET_NAME": "b"}, "not both"),
        ({"R2_BUCKET_NAME": "b"}, "R2_ACCOUNT_ID"),
        ({"S3_BUCKET": "a", "S3_ENDPOINT_URL": "ftp://x"}, "http"),
        ({"S3_BUCKET": "a", "S3_PRESIGN_SECONDS": "9999999"}, "7 days"),
        ({"CLAMD_URL": "http://x"}, "CLAMD_URL"),
        ({"SAMPLE_MAX_BYTES": "abc"}, "integer"),
    ],
)
def test_bad_settings_are_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)
