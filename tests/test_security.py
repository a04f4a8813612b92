"""Which API belongs to which group, and what each token opens."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.security import (
    CONTROL,
    DATA,
    HEALTH,
    METRICS,
    Security,
    SecurityError,
    Tls,
    grpc_group,
    http_group,
)

DATA_TOKEN = "data-token-0123456789abcdef"
CONTROL_TOKEN = "control-token-0123456789abcdef"


@pytest.mark.parametrize(
    ("path", "group"),
    [
        ("/v2/health/live", HEALTH),
        ("/v2/health/ready/", HEALTH),
        ("/v2/models/m/ready", HEALTH),
        ("/v2/models/m/versions/2/ready", HEALTH),
        ("/v2/models/m/infer", DATA),
        ("/v2/models/m/versions/ready", DATA),  # model m's version "ready": metadata
        ("/v2/models/m/infer/ready", DATA),
        ("/v2/models/m", DATA),
        ("/v2/models/stats", DATA),
        ("/v2", DATA),
        ("/v1/models/m:predict", DATA),
        ("/v2/repository/index", CONTROL),
        ("/v2/repository/models/m/load", CONTROL),
        ("/v2/systemsharedmemory/region/r/register", CONTROL),
        ("/v2/cudasharedmemory/status", CONTROL),
        ("/v2/logging", CONTROL),
    ],
)
def test_http_groups(path: str, group: str) -> None:
    assert http_group(path) == group


@pytest.mark.parametrize(
    ("method", "group"),
    [
        ("/inference.GRPCInferenceService/ModelInfer", DATA),
        ("/inference.GRPCInferenceService/ModelStreamInfer", DATA),
        ("/inference.GRPCInferenceService/ModelMetadata", DATA),
        ("/inference.GRPCInferenceService/ServerLive", HEALTH),
        ("/inference.GRPCInferenceService/ModelReady", HEALTH),
        ("/grpc.health.v1.Health/Check", HEALTH),
        ("/inference.GRPCInferenceService/RepositoryModelLoad", CONTROL),
        ("/inference.GRPCInferenceService/RepositoryIndex", CONTROL),
        ("/inference.GRPCInferenceService/SystemSharedMemoryRegister", CONTROL),
        ("/inference.GRPCInferenceService/LogSettings", CONTROL),
    ],
)
def test_grpc_groups(method: str, group: str) -> None:
    assert grpc_group(method) == group


def tokens(tmp_path: Path, data: str = DATA_TOKEN, control: str = CONTROL_TOKEN) -> Security:
    (tmp_path / "data").write_text(f"{data}\n")
    (tmp_path / "control").write_text(f"{control}\n")
    return Security.from_sources(str(tmp_path / "data"), str(tmp_path / "control"))


def test_each_token_opens_its_groups(tmp_path: Path) -> None:
    s = tokens(tmp_path)
    bearer = f"Bearer {DATA_TOKEN}"
    control = f"Bearer {CONTROL_TOKEN}"
    assert s.check(DATA, bearer) is None and s.check(DATA, control) is None
    assert s.check(CONTROL, control) is None
    denied = s.check(CONTROL, bearer)
    assert denied is not None and denied.status == 403 and not denied.headers
    assert s.check(HEALTH, None) is None and s.check(METRICS, None) is None


def test_missing_and_wrong_tokens_are_401_with_a_challenge(tmp_path: Path) -> None:
    s = tokens(tmp_path)
    for header in (None, "", "Basic dXNlcjpwYXNz", "Bearer ", f"bearer {DATA_TOKEN}x"):
        denied = s.check(DATA, header)
        assert denied is not None and denied.status == 401, header
        assert denied.headers["www-authenticate"].startswith('Bearer realm="conveyor"')
    wrong = s.check(DATA, f"Bearer {DATA_TOKEN}x")
    assert wrong is not None and 'error="invalid_token"' in wrong.headers["www-authenticate"]
    assert DATA_TOKEN not in wrong.message  # never echoed
    assert s.check(DATA, f"bearer {DATA_TOKEN}") is None  # the scheme is case-insensitive


def test_exempt_groups_can_be_closed(tmp_path: Path) -> None:
    (tmp_path / "data").write_text(DATA_TOKEN)
    s = Security.from_sources(str(tmp_path / "data"), exempt="")
    assert s.check(HEALTH, None) is not None and s.check(METRICS, None) is not None
    assert s.check(HEALTH, f"Bearer {DATA_TOKEN}") is None
    with pytest.raises(SecurityError, match="health and/or metrics, not data"):
        Security.from_sources(str(tmp_path / "data"), exempt="health,data")


def test_without_a_control_token_the_data_token_opens_control(tmp_path: Path) -> None:
    (tmp_path / "data").write_text(DATA_TOKEN)
    s = Security.from_sources(str(tmp_path / "data"))
    assert s.check(CONTROL, f"Bearer {DATA_TOKEN}") is None
    assert s.check(CONTROL, None) is not None


def test_only_a_control_token_leaves_the_data_plane_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVEYOR_CONTROL_TOKEN", CONTROL_TOKEN)
    s = Security.from_sources()
    assert s.enabled and s.check(DATA, None) is None
    assert s.check(CONTROL, None) is not None
    assert s.check(CONTROL, f"Bearer {CONTROL_TOKEN}") is None


def test_tokens_rotate_and_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "data").write_text(f"{DATA_TOKEN}\n\nnext-token-0123456789abcdef\n")
    monkeypatch.setenv("CONVEYOR_AUTH_TOKEN", "env-token-0123456789abcdef")
    s = Security.from_sources(str(tmp_path / "data"))
    for token in (DATA_TOKEN, "next-token-0123456789abcdef", "env-token-0123456789abcdef"):
        assert s.check(DATA, f"Bearer {token}") is None


def test_bad_token_sources_are_said_at_start(tmp_path: Path) -> None:
    with pytest.raises(SecurityError, match="cannot read the token file"):
        Security.from_sources(str(tmp_path / "absent"))
    (tmp_path / "empty").write_text("\n \n")
    with pytest.raises(SecurityError, match="holds no token"):
        Security.from_sources(str(tmp_path / "empty"))
    (tmp_path / "short").write_text("secret")
    with pytest.raises(SecurityError, match="too short"):
        Security.from_sources(str(tmp_path / "short"))
    assert not Security.from_sources().enabled


def test_tls_needs_a_readable_pair(tmp_path: Path) -> None:
    assert Tls.from_args(None, None, None) is None
    with pytest.raises(SecurityError, match="both --tls-cert-file and --tls-key-file"):
        Tls.from_args(str(tmp_path / "cert.pem"), None, None)
    with pytest.raises(SecurityError, match="needs --tls-cert-file"):
        Tls.from_args(None, None, str(tmp_path / "ca.pem"))
    (tmp_path / "cert.pem").write_text("not a certificate")
    with pytest.raises(SecurityError, match="cannot use the TLS files"):
        Tls.from_args(str(tmp_path / "cert.pem"), str(tmp_path / "cert.pem"), None)
