"""HTTP adapters as a server sees them: TorchServe's /predictions path and a request
template's method, headers and body."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.cli import main
from conveyor.http.server import HttpRequest, HttpResponse
from tests.bench.servers import serving_in_thread


class Recorder:
    def __init__(self) -> None:
        self.seen: list[HttpRequest] = []

    async def __call__(self, request: HttpRequest) -> HttpResponse:
        self.seen.append(request)
        return HttpResponse(200, [b"[0.1, 0.9]"])


@pytest.fixture
def recorded() -> Iterator[tuple[str, Recorder]]:
    app = Recorder()
    with serving_in_thread(app) as url:
        yield url, app


def test_torchserve_predictions(recorded: tuple[str, Recorder], tmp_path: Path) -> None:
    url, app = recorded
    image = tmp_path / "kitten.jpg"
    image.write_bytes(b"\xff\xd8 not really a jpeg")
    argv = ["bench", url, "--protocol", "torchserve", "--model", "resnet"]
    argv += ["--model-version", "2", "--body-file", str(image), "--requests", "5", "--warmup", "0"]
    assert main(argv) == 0
    assert len(app.seen) == 5
    assert {(r.method, r.path) for r in app.seen} == {("POST", "/predictions/resnet/2")}
    assert app.seen[0].body == image.read_bytes()


def test_request_template(recorded: tuple[str, Recorder], tmp_path: Path) -> None:
    url, app = recorded
    body = tmp_path / "req.json"
    body.write_text('{"text": "hello"}')
    argv = ["bench", f"{url}/predict?x=1", "--protocol", "http", "--method", "PUT"]
    argv += ["--body-file", str(body), "--header", "x-api-key: k", "--requests", "3"]
    assert main([*argv, "--warmup", "0"]) == 0
    r = app.seen[0]
    assert (r.method, r.path, r.query) == ("PUT", "/predict", "x=1")
    assert r.headers["x-api-key"] == "k" and r.body == b'{"text": "hello"}'


def test_torchserve_needs_a_body(recorded: tuple[str, Recorder]) -> None:
    url, _ = recorded
    with pytest.raises(SystemExit, match="needs --body-file"):
        main(["bench", url, "--protocol", "torchserve", "--model", "m", "--requests", "1"])
