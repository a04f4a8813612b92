"""`conveyor serve` exposed: bearer tokens on REST and gRPC (a separate control token),
TLS on every listener with a certificate made here, mutual TLS; tritonclient on both
protocols with TLS."""

from __future__ import annotations

import datetime
import http.client
import ipaddress
import json
import ssl
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from tritonclient.utils import InferenceServerException

from tests.e2e.utils import ServerProcess

pytestmark = pytest.mark.e2e

DATA = "data-token-0123456789abcdef"
CONTROL = "control-token-0123456789abcdef"


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _write(path: Path, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> None:
    path.with_suffix(".key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.with_suffix(".pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def make_certs(root: Path) -> Path:
    """A CA, a server certificate for 127.0.0.1 and localhost, a client certificate."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("conveyor test CA"))
        .issuer_name(_name("conveyor test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    _write(root / "ca", ca_key, ca)
    for who, extension in (
        (
            "server",
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
        ),
        ("client", None),
    ):
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(f"conveyor test {who}"))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
        )
        if extension is not None:
            builder = builder.add_extension(extension, critical=False)
        _write(root / who, key, builder.sign(ca_key, hashes.SHA256()))
    return root


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def server(
    demo_repo: Path, certs: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    (certs / "data.token").write_text(DATA + "\n")
    (certs / "control.token").write_text(CONTROL + "\n")
    args = [
        "--model-control-mode", "explicit", "--load-model", "linear",
        "--auth-token-file", str(certs / "data.token"),
        "--control-token-file", str(certs / "control.token"),
        "--tls-cert-file", str(certs / "server.pem"), "--tls-key-file", str(certs / "server.key"),
    ]  # fmt: skip
    proc = ServerProcess(demo_repo, *args, log_dir=tmp_path_factory.mktemp("logs")).start()
    yield proc
    assert proc.stop() == 0, proc.log()
    assert DATA not in proc.log() and CONTROL not in proc.log()  # never logged


def https(
    server: ServerProcess, certs: Path, method: str, path: str, token: str | None = None,
    body: bytes | None = None, port: int | None = None,
) -> tuple[int, dict[str, str], bytes]:  # fmt: skip
    context = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    conn = http.client.HTTPSConnection("127.0.0.1", port or server.port, context=context)
    headers = {"authorization": f"Bearer {token}"} if token else {}
    try:
        conn.request(method, path, body, headers)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


INFER = json.dumps(
    {"inputs": [{"name": "x", "shape": [1, 256], "datatype": "FP32", "data": [0.5] * 256}]}
).encode()


def test_rest_tokens_over_tls(server: ServerProcess, certs: Path) -> None:
    infer = "/v2/models/linear/infer"
    status, headers, body = https(server, certs, "POST", infer, body=INFER)
    assert status == 401 and headers["www-authenticate"] == 'Bearer realm="conveyor"', body
    assert b"Authorization: Bearer" in body
    status, headers, _ = https(server, certs, "POST", infer, "wrong-token-0123456789", INFER)
    assert status == 401 and 'error="invalid_token"' in headers["www-authenticate"]
    status, _, body = https(server, certs, "POST", infer, DATA, INFER)
    assert status == 200 and len(json.loads(body)["outputs"][0]["data"]) == 256
    status, _, body = https(server, certs, "POST", "/v2/repository/index", DATA, b"{}")
    assert status == 403 and b"control token" in body
    status, _, body = https(server, certs, "POST", "/v2/repository/index", CONTROL, b"{}")
    assert status == 200 and any(row["name"] == "linear" for row in json.loads(body))
    assert https(server, certs, "POST", infer, CONTROL, INFER)[0] == 200  # opens all
    # probes and scrapers need no token; the metrics listener speaks TLS too
    assert https(server, certs, "GET", "/v2/health/ready")[0] == 200
    assert https(server, certs, "GET", "/v2/models/linear/ready")[0] == 200
    status, _, body = https(server, certs, "GET", "/metrics", port=server.metrics_port)
    assert status == 200 and b"conveyor_" in body
    assert https(server, certs, "GET", "/v2/models/linear", DATA)[0] == 200


def test_tritonclient_http_with_tls_and_a_token(server: ServerProcess, certs: Path) -> None:
    client = httpclient.InferenceServerClient(
        server.url, ssl=True, ssl_options={"ca_certs": str(certs / "ca.pem")}
    )
    try:
        x = httpclient.InferInput("x", [1, 256], "FP32")
        x.set_data_from_numpy(np.ones((1, 256), np.float32))
        with pytest.raises(InferenceServerException, match="Authorization: Bearer"):
            client.infer("linear", [x])
        out = client.infer("linear", [x], headers={"Authorization": f"Bearer {DATA}"})
        assert out.as_numpy("y").shape == (1, 256)
        assert client.is_server_live()
    finally:
        client.close()


def test_tritonclient_grpc_with_tls_and_tokens(server: ServerProcess, certs: Path) -> None:
    client = grpcclient.InferenceServerClient(
        server.grpc_url, ssl=True, root_certificates=str(certs / "ca.pem")
    )
    try:
        assert client.is_server_live() and client.is_server_ready()  # health: no token
        x = grpcclient.InferInput("x", [1, 256], "FP32")
        x.set_data_from_numpy(np.ones((1, 256), np.float32))
        with pytest.raises(InferenceServerException, match="UNAUTHENTICATED"):
            client.infer("linear", [x])
        with pytest.raises(InferenceServerException, match="UNAUTHENTICATED"):
            client.infer("linear", [x], headers={"authorization": "Bearer nope-0123456789abcdef"})
        out = client.infer("linear", [x], headers={"authorization": f"Bearer {DATA}"})
        assert out.as_numpy("y").shape == (1, 256)
        data, control = {"authorization": f"Bearer {DATA}"}, {"authorization": f"Bearer {CONTROL}"}
        with pytest.raises(InferenceServerException, match="PERMISSION_DENIED"):
            client.get_model_repository_index(headers=data)
        index = client.get_model_repository_index(headers=control, as_json=True)
        assert any(m["name"] == "linear" for m in index["models"])
    finally:
        client.close()


def test_mutual_tls_on_the_in_process_grpc_front(
    demo_repo: Path, certs: Path, tmp_path: Path
) -> None:
    (tmp_path / "logs").mkdir()
    args = [
        "--model-control-mode", "explicit", "--load-model", "linear", "--grpc-front", "loop",
        "--tls-cert-file", str(certs / "server.pem"), "--tls-key-file", str(certs / "server.key"),
        "--tls-client-ca-file", str(certs / "ca.pem"),
    ]  # fmt: skip
    proc = ServerProcess(demo_repo, *args, log_dir=tmp_path / "logs").start()
    try:
        anonymous = grpcclient.InferenceServerClient(
            proc.grpc_url, ssl=True, root_certificates=str(certs / "ca.pem")
        )
        with pytest.raises(InferenceServerException):
            anonymous.is_server_live()
        anonymous.close()
        known = grpcclient.InferenceServerClient(
            proc.grpc_url,
            ssl=True,
            root_certificates=str(certs / "ca.pem"),
            private_key=str(certs / "client.key"),
            certificate_chain=str(certs / "client.pem"),
        )
        assert known.is_server_live()
        known.close()
        # REST asks for the client certificate too
        context = ssl.create_default_context(cafile=str(certs / "ca.pem"))
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            conn = http.client.HTTPSConnection("127.0.0.1", proc.port, context=context)
            conn.request("GET", "/v2/health/live")
            conn.getresponse().read()
        context.load_cert_chain(str(certs / "client.pem"), str(certs / "client.key"))
        conn = http.client.HTTPSConnection("127.0.0.1", proc.port, context=context)
        conn.request("GET", "/v2/health/live")
        assert conn.getresponse().status == 200
        conn.close()
    finally:
        assert proc.stop() == 0, proc.log()
