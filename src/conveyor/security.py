"""Exposing Conveyor: bearer tokens for the data plane and, separately, for the control
APIs, and TLS for every listener.

Every API belongs to one of four groups:

- `health`: liveness and readiness (`/v2/health/*`, `/v2/models/{m}/ready`, gRPC
  ServerLive / ServerReady / ModelReady and `grpc.health.v1`) — for probes;
- `metrics`: the Prometheus listener — for scrapers;
- `control`: what changes or exposes the server's state (the repository API — index,
  load, unload, routing —, shared-memory registration, log settings), as Triton's
  restricted-API groups `model-repository`, `shared-memory` and `logging`;
- `data`: everything else (inference, metadata, configs, statistics, TF Serving's API).

With a data token set, `data` needs `Authorization: Bearer <token>` (gRPC: metadata
`authorization`); `control` needs the control token when one is set (the data token is
refused there: 403), else the data token. `health` and `metrics` are open unless
`exempt` says otherwise. A control token is accepted on every group. A missing or wrong
token is a 401 with `WWW-Authenticate` (gRPC UNAUTHENTICATED); the right token for the
wrong group is a 403 (PERMISSION_DENIED). Tokens are compared in constant time and never
logged; each file may hold several, one per line, so a token can be rotated without a
restart of the clients.
"""

from __future__ import annotations

import hmac
import os
import ssl
from dataclasses import dataclass, field
from pathlib import Path

HEALTH, METRICS, CONTROL, DATA = "health", "metrics", "control", "data"
GROUPS = (HEALTH, METRICS, CONTROL, DATA)
DATA_ENV, CONTROL_ENV = "CONVEYOR_AUTH_TOKEN", "CONVEYOR_CONTROL_TOKEN"

_CONTROL_SECTIONS = ("repository", "systemsharedmemory", "cudasharedmemory", "logging")
_GRPC_HEALTH = {"ServerLive", "ServerReady", "ModelReady"}
_GRPC_CONTROL_PREFIXES = (
    "Repository",
    "SystemSharedMemory",
    "CudaSharedMemory",
    "LogSettings",
    "TraceSetting",
)


class SecurityError(ValueError):
    """A token or certificate source that cannot be used (said at start, not per call)."""


def _read_tokens(path: str | None, env: str) -> tuple[bytes, ...]:
    tokens: list[str] = []
    if path:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise SecurityError(f"cannot read the token file {path}: {exc.strerror}") from None
        tokens += [line.strip() for line in text.splitlines() if line.strip()]
        if not tokens:
            raise SecurityError(f"the token file {path} holds no token")
    value = os.environ.get(env, "").strip()
    if value:
        tokens.append(value)
    for token in tokens:
        if len(token) < 16:
            raise SecurityError(
                f"a token of {len(token)} characters is too short to guess-proof (16 or more)"
            )
    return tuple(t.encode() for t in tokens)


def http_group(path: str) -> str:
    """The group of a REST path (the metrics listener's are `metrics`)."""
    parts = path.rstrip("/").split("/")
    if len(parts) >= 3 and parts[1] == "v2":
        if parts[2] == "health":
            return HEALTH
        if parts[2] in _CONTROL_SECTIONS:
            return CONTROL
        # exactly /v2/models/{m}/ready and /v2/models/{m}/versions/{v}/ready, as routed
        routed = len(parts) == 5 or (len(parts) == 7 and parts[4] == "versions")
        if parts[2] == "models" and parts[-1] == "ready" and routed:
            return HEALTH
    return DATA


def grpc_group(method: str) -> str:
    """The group of a gRPC method (`/package.Service/Method`)."""
    service, _, name = method.rpartition("/")
    if service.endswith("grpc.health.v1.Health") or name in _GRPC_HEALTH:
        return HEALTH
    if name.startswith(_GRPC_CONTROL_PREFIXES):
        return CONTROL
    return DATA


@dataclass(frozen=True, slots=True)
class Denied:
    status: int  # 401 or 403
    message: str
    invalid: bool = False  # a token was given, and it is wrong

    @property
    def headers(self) -> dict[str, str]:
        if self.status != 401:
            return {}
        error = ', error="invalid_token"' if self.invalid else ""
        return {"www-authenticate": f'Bearer realm="conveyor"{error}'}


@dataclass(frozen=True, slots=True)
class Security:
    data_tokens: tuple[bytes, ...] = ()
    control_tokens: tuple[bytes, ...] = ()
    exempt: frozenset[str] = field(default_factory=lambda: frozenset({HEALTH, METRICS}))
    # the sources, so that the gRPC front process reads the same ones (never the tokens
    # themselves on its command line)
    data_token_file: str | None = None
    control_token_file: str | None = None

    @classmethod
    def from_sources(
        cls,
        data_token_file: str | None = None,
        control_token_file: str | None = None,
        exempt: str = "health,metrics",
    ) -> Security:
        groups = frozenset(g.strip() for g in exempt.split(",") if g.strip())
        unknown = groups - {HEALTH, METRICS}
        if unknown:
            raise SecurityError(
                f"--auth-exempt takes health and/or metrics, not {', '.join(sorted(unknown))}"
            )
        return cls(
            _read_tokens(data_token_file, DATA_ENV),
            _read_tokens(control_token_file, CONTROL_ENV),
            groups,
            data_token_file,
            control_token_file,
        )

    @property
    def enabled(self) -> bool:
        return bool(self.data_tokens or self.control_tokens)

    def check(self, group: str, authorization: str | None) -> Denied | None:
        """None when the call may go on."""
        if group in self.exempt:
            return None
        needed = self.control_tokens if group == CONTROL and self.control_tokens else None
        if needed is None:
            needed = self.data_tokens
            if not needed and group != CONTROL:
                return None  # only a control token is set: the data plane is open
        if not needed:
            return None
        token = _bearer(authorization)
        if token is None:
            return Denied(401, f"the {group} APIs need 'Authorization: Bearer <token>'")
        if _matches(token, self.control_tokens):
            return None  # the control token opens everything
        if _matches(token, needed):
            return None
        if group == CONTROL and _matches(token, self.data_tokens):
            return Denied(403, "this token does not open the control APIs (use the control token)")
        return Denied(401, f"wrong token for the {group} APIs", invalid=True)


def _bearer(authorization: str | None) -> bytes | None:
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip().encode()


def _matches(token: bytes, tokens: tuple[bytes, ...]) -> bool:
    found = False
    for candidate in tokens:  # every candidate compared: no early exit to time
        found |= hmac.compare_digest(token, candidate)
    return found


@dataclass(frozen=True, slots=True)
class Tls:
    """Certificate and key (PEM) for every listener; with `client_ca`, clients must
    present a certificate it signed (mutual TLS)."""

    cert_file: str
    key_file: str
    client_ca_file: str | None = None

    @classmethod
    def from_args(cls, cert: str | None, key: str | None, client_ca: str | None) -> Tls | None:
        if not cert and not key:
            if client_ca:
                raise SecurityError("--tls-client-ca-file needs --tls-cert-file and --tls-key-file")
            return None
        if not cert or not key:
            raise SecurityError("TLS needs both --tls-cert-file and --tls-key-file")
        tls = cls(cert, key, client_ca)
        tls.http_context()  # fail at start on a bad file, not on the first connection
        return tls

    def http_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            context.load_cert_chain(self.cert_file, self.key_file)
            if self.client_ca_file:
                context.load_verify_locations(self.client_ca_file)
                context.verify_mode = ssl.CERT_REQUIRED
        except (OSError, ssl.SSLError) as exc:
            raise SecurityError(f"cannot use the TLS files: {exc}") from None
        return context

    def grpc_credentials(self) -> object:
        import grpc

        def read(path: str) -> bytes:
            try:
                return Path(path).read_bytes()
            except OSError as exc:
                raise SecurityError(f"cannot read {path}: {exc.strerror}") from None

        ca = read(self.client_ca_file) if self.client_ca_file else None
        return grpc.ssl_server_credentials(
            [(read(self.key_file), read(self.cert_file))],
            root_certificates=ca,
            require_client_auth=ca is not None,
        )
