"""DIV2K download against a local HTTP server (127.0.0.1) serving tiny zips laid out like the official ones."""
from __future__ import annotations

import hashlib
import io
import json
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image

from tfsr.data.download import ensure_div2k
from tfsr.errors import TfsrError


def _png(array) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as zf:  # stored: a flipped byte breaks a CRC
        for name, data in files.items():
            zf.writestr(name, data)
    return buffer.getvalue()


@pytest.fixture
def archives():
    rng = np.random.default_rng(0)
    hr = {f"DIV2K_train_HR/{i:04d}.png": _png(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)) for i in (1, 2)}
    lr = {f"DIV2K_train_LR_bicubic/X2/{i:04d}x2.png": _png(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)) for i in (1, 2)}
    return {"DIV2K_train_HR.zip": _zip(hr), "DIV2K_train_LR_bicubic_X2.zip": _zip(lr)}


class Server:
    """Serves ``files`` with HTTP Range support (unless ``ignore_range``); ``cut_first`` / ``corrupt_first`` spoil the
    first response of a file."""

    def __init__(self, files):
        self.files, self.requests = files, []
        self.cut_first: set[str] = set()
        self.corrupt_first: set[str] = set()
        self.ignore_range = False  # answer every request with the whole file (200), as some servers do
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                name = self.path.lstrip("/")
                if name not in server.files:
                    self.send_error(404)
                    return
                data = server.files[name]
                start = int(self.headers["Range"].split("=")[1].split("-")[0]) if self.headers.get("Range") else 0
                server.requests.append((name, start))
                start = 0 if server.ignore_range else start
                if name in server.corrupt_first:
                    server.corrupt_first.discard(name)
                    middle = len(data) // 2
                    data = data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1:]
                self.send_response(206 if start else 200)
                self.send_header("Content-Length", str(len(data) - start))
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                body = data[start:]
                if name in server.cut_first:  # promise everything, send a third, hang up
                    server.cut_first.discard(name)
                    body = body[: len(body) // 3]
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(archives):
    s = Server(archives)
    yield s
    s.close()


def _quiet(*args):
    pass


def test_download_unpacks_the_official_layout_and_records_checksums(tmp_path, server, archives):
    from tfsr.data.sources import find_source

    root = ensure_div2k(tmp_path / "DIV2K", 2, server.url, log=_quiet, progress=_quiet)
    assert sorted(p.name for p in (root / "DIV2K_train_HR").iterdir()) == ["0001.png", "0002.png"]
    source = find_source(root, 2)
    assert source.kind == "div2k" and source.images[1].lr.name == "0002x2.png"
    manifest = json.loads((root / "checksums.json").read_text())
    assert manifest["DIV2K_train_HR.zip"]["size"] == len(archives["DIV2K_train_HR.zip"])
    assert not (root / "downloads").exists()
    assert ensure_div2k(root, 2, "http://127.0.0.1:1/", log=_quiet) == root  # present: no network needed


@pytest.mark.fault
def test_interrupted_download_resumes_with_a_range_request(tmp_path, server, archives):
    server.cut_first.add("DIV2K_train_HR.zip")
    ensure_div2k(tmp_path / "DIV2K", 2, server.url, log=_quiet, progress=_quiet)
    hr_requests = [start for name, start in server.requests if name == "DIV2K_train_HR.zip"]
    assert hr_requests == [0, len(archives["DIV2K_train_HR.zip"]) // 3]
    assert (tmp_path / "DIV2K" / "DIV2K_train_HR" / "0002.png").read_bytes() == zipfile.ZipFile(
        io.BytesIO(archives["DIV2K_train_HR.zip"])).read("DIV2K_train_HR/0002.png")  # fmt: skip


@pytest.mark.fault
def test_corrupted_download_fails_its_check_and_is_fetched_again(tmp_path, server, archives, capsys):
    server.corrupt_first.add("DIV2K_train_LR_bicubic_X2.zip")
    ensure_div2k(tmp_path / "DIV2K", 2, server.url, log=_quiet, progress=_quiet)
    lr_requests = [start for name, start in server.requests if name == "DIV2K_train_LR_bicubic_X2.zip"]
    assert lr_requests == [0, 0]
    assert "fails its CRC-32; fetching it again" in capsys.readouterr().err
    assert len(list((tmp_path / "DIV2K" / "DIV2K_train_LR_bicubic" / "X2").iterdir())) == 2


@pytest.mark.fault
def test_a_manifest_checksum_that_never_matches_gives_up_with_a_clear_error(tmp_path, server):
    root = tmp_path / "DIV2K"
    root.mkdir()
    (root / "checksums.json").write_text(json.dumps({"DIV2K_train_HR.zip": {"sha256": "0" * 64}}))
    with pytest.raises(TfsrError, match=r"failed after 4 attempts: DIV2K_train_HR.zip has the wrong SHA-256"):
        ensure_div2k(root, 2, server.url, log=_quiet, progress=_quiet)


def test_a_partial_file_left_by_a_killed_process_is_resumed(tmp_path, server, archives):
    data = archives["DIV2K_train_HR.zip"]
    (tmp_path / "DIV2K" / "downloads").mkdir(parents=True)
    (tmp_path / "DIV2K" / "downloads" / "DIV2K_train_HR.zip.part").write_bytes(data[:100])
    ensure_div2k(tmp_path / "DIV2K", 2, server.url, log=_quiet, progress=_quiet)
    assert ("DIV2K_train_HR.zip", 100) in server.requests
    manifest = json.loads((tmp_path / "DIV2K" / "checksums.json").read_text())
    assert manifest["DIV2K_train_HR.zip"]["sha256"] == hashlib.sha256(data).hexdigest()


def test_a_server_that_ignores_the_range_sends_the_whole_file_which_replaces_the_partial_one(tmp_path, server,
                                                                                             archives, capsys):  # fmt: skip
    server.ignore_range = True
    (tmp_path / "DIV2K" / "downloads").mkdir(parents=True)
    (tmp_path / "DIV2K" / "downloads" / "DIV2K_train_HR.zip.part").write_bytes(archives["DIV2K_train_HR.zip"][:100])
    ensure_div2k(tmp_path / "DIV2K", 2, server.url, log=_quiet, progress=_quiet)
    assert [start for name, start in server.requests if name == "DIV2K_train_HR.zip"] == [100]
    assert "fetching it again" not in capsys.readouterr().err
    manifest = json.loads((tmp_path / "DIV2K" / "checksums.json").read_text())  # not the 100 bytes + the whole file
    assert manifest["DIV2K_train_HR.zip"]["sha256"] == hashlib.sha256(archives["DIV2K_train_HR.zip"]).hexdigest()


def test_a_zip_with_bytes_before_its_first_member_fails_the_check(tmp_path, archives):
    from tfsr.data.download import ChecksumError, verify

    path = tmp_path / "DIV2K_train_HR.zip"
    path.write_bytes(b"<html>" + archives["DIV2K_train_HR.zip"])  # zipfile alone reads it: it reads from the end
    assert zipfile.ZipFile(path).testzip() is None
    with pytest.raises(ChecksumError, match="DIV2K_train_HR.zip does not start with a zip member"):
        verify(path, {})


def test_no_network_is_one_error_saying_where_to_put_the_files(tmp_path):
    with pytest.raises(TfsrError) as err:
        ensure_div2k(tmp_path / "DIV2K", 4, "http://127.0.0.1:1/", log=_quiet, progress=_quiet)
    message = str(err.value)
    assert "cannot reach http://127.0.0.1:1/DIV2K_train_HR.zip" in message
    assert f"unpack it into {tmp_path / 'DIV2K'}" in message and "--data FOLDER" in message
    assert "\n" not in message


def test_cli_train_without_div2k_and_without_network_exits_with_one_line(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from cli import cli

    monkeypatch.setenv("TFSR_DIV2K_URL", "http://127.0.0.1:1/")
    args = ["train", "slwsr16", "--data", "div2k", "--data-root", str(tmp_path), "--out", str(tmp_path / "run")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2 and not (tmp_path / "run").exists()
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "cannot reach http://127.0.0.1:1/DIV2K_train_HR.zip" in lines[0]
    assert f"unpack it into {tmp_path / 'DIV2K'}" in lines[0]
