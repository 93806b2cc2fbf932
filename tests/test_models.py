"""Model catalogue, lookup and download, against a local HTTP server.

No test touches the internet: a small aiohttp app on 127.0.0.1 plays the
upstream model hosts, serving a fake Vosk zip and a fake Piper voice.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import zipfile
from pathlib import Path

import pytest
import pytest_asyncio
from aiohttp import web

from ivr.errors import ConfigError, IvrError, ModelMissing
from ivr.models import (
    BadArchive,
    ChecksumMismatch,
    DownloadError,
    InvalidModel,
    PullError,
    UnsafeArchive,
    list_models,
    load_catalogue,
    locate,
    parse_catalogue,
    pull,
    pull_entry,
)

REPO = Path(__file__).resolve().parents[1]
VOSK = "vosk-model-test-de"
VOICE = "de_DE-test-medium"
FAR_AWAY = "https://models.invalid/some/deep/path"  # never fetched: base_url_override wins


# --------------------------------------------------------------------------- fixtures


def vosk_zip(root: str = VOSK, extra: dict[str, bytes] | None = None, drop: tuple[str, ...] = ()) -> bytes:
    """A Vosk-shaped zip: the real layout, with random bytes instead of a model."""
    members = {
        f"{root}/am/final.mdl": os.urandom(300_000),
        f"{root}/conf/model.conf": b"--min-active=200\n",
        f"{root}/graph/HCLr.fst": os.urandom(1000),
        f"{root}/graph/Gr.fst": os.urandom(1000),
        f"{root}/README": b"fake model for tests\n",
    }
    members.update(extra or {})
    for rel in drop:
        del members[f"{root}/{rel}"]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


ONNX = b"\x08\x07" + os.urandom(120_000)
CONFIG = json.dumps({"audio": {"sample_rate": 22050}, "phoneme_id_map": {"a": [14]}}).encode()


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def md5(data: bytes) -> str:
    return "md5:" + hashlib.md5(data).hexdigest()


def make_catalogue(base: str, zip_bytes: bytes, *, config: bytes = CONFIG):
    return parse_catalogue(
        {
            "vosk": [
                {
                    "name": VOSK,
                    "language": "de",
                    "default": True,
                    "url": f"{base}/{VOSK}.zip",
                    "size": len(zip_bytes),
                    "checksum": sha256(zip_bytes),
                }
            ],
            "piper": [
                {
                    "name": VOICE,
                    "language": "de",
                    "default": True,
                    "sample_rate": 22050,
                    "files": [
                        {"url": f"{base}/{VOICE}.onnx", "size": len(ONNX), "checksum": md5(ONNX)},
                        {"url": f"{base}/{VOICE}.onnx.json", "size": len(config), "checksum": md5(config)},
                    ],
                }
            ],
        },
        source="test-catalogue.yml",
    )


class Upstream:
    """Serves ``files`` by name, honours ``Range: bytes=N-``, and records every request."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None, int]] = []  # (name, Range header, status)
        self.cut_once: set[str] = set()  # names whose next response dies halfway
        self.ignore_range = False
        self.base = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        rng = request.headers.get("Range")
        body = self.files.get(name)
        if body is None:
            self.requests.append((name, rng, 404))
            return web.Response(status=404, text="no such model")
        start, status, headers = 0, 200, {}
        if rng and not self.ignore_range:
            start = int(re.fullmatch(r"bytes=(\d+)-", rng).group(1))
            if start >= len(body):
                self.requests.append((name, rng, 416))
                return web.Response(status=416)
            status = 206
            headers["Content-Range"] = f"bytes {start}-{len(body) - 1}/{len(body)}"
        self.requests.append((name, rng, status))
        chunk = body[start:]
        if name in self.cut_once:
            self.cut_once.discard(name)
            resp = web.StreamResponse(status=status, headers=headers)
            resp.content_length = len(chunk)
            await resp.prepare(request)
            await resp.write(chunk[: len(chunk) // 2])
            request.transport.close()  # connection drops mid-body
            return resp
        return web.Response(body=chunk, status=status, headers=headers)


@pytest_asyncio.fixture
async def upstream(aiohttp_server) -> Upstream:
    up = Upstream()
    app = web.Application()
    app.router.add_get("/{name:.+}", up.handle)
    server = await aiohttp_server(app, host="127.0.0.1")
    up.base = str(server.make_url("")).rstrip("/")
    up.files.update({f"{VOICE}.onnx": ONNX, f"{VOICE}.onnx.json": CONFIG})
    return up


def nothing_installed(cache: Path) -> bool:
    return not (cache / "vosk" / VOSK).exists() and not (cache / "piper" / VOICE).exists()


# --------------------------------------------------------------------------- pull


@pytest.mark.asyncio
async def test_pull_installs_models_and_is_idempotent(upstream: Upstream, tmp_path: Path):
    zip_bytes = vosk_zip()
    upstream.files[f"{VOSK}.zip"] = zip_bytes
    cat = make_catalogue(FAR_AWAY, zip_bytes)
    seen: list[tuple[str, int, int | None]] = []

    paths = await pull(
        ["de"], tmp_path, catalogue=cat, base_url_override=upstream.base, progress=lambda *a: seen.append(a)
    )

    vosk_dir, onnx = tmp_path / "vosk" / VOSK, tmp_path / "piper" / VOICE / f"{VOICE}.onnx"
    assert paths == [vosk_dir, onnx]
    assert (vosk_dir / "am" / "final.mdl").is_file()  # unwrapped from the zip's top folder
    assert (vosk_dir / "graph" / "HCLr.fst").is_file()
    assert onnx.read_bytes() == ONNX and onnx.with_suffix(".onnx.json").read_bytes() == CONFIG
    assert not (tmp_path / ".partial").exists()
    assert seen[-1] == (f"{VOICE}.onnx.json", len(CONFIG), len(CONFIG))
    assert locate("vosk", VOSK, tmp_path, catalogue=cat) == vosk_dir
    assert locate("piper", VOICE, tmp_path, catalogue=cat) == onnx

    count = len(upstream.requests)
    assert await pull(["de"], tmp_path, catalogue=cat, base_url_override=upstream.base) == paths
    assert len(upstream.requests) == count  # already installed: no download


@pytest.mark.asyncio
async def test_pull_resumes_existing_part_file_with_range(upstream: Upstream, tmp_path: Path):
    zip_bytes = vosk_zip()
    upstream.files[f"{VOSK}.zip"] = zip_bytes
    cat = make_catalogue(upstream.base, zip_bytes)  # catalogue URLs point at the server
    half = len(zip_bytes) // 2
    part = tmp_path / ".partial" / "vosk" / VOSK / f"{VOSK}.zip.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(zip_bytes[:half])

    await pull_entry(cat.get(VOSK), tmp_path)

    assert upstream.requests == [(f"{VOSK}.zip", f"bytes={half}-", 206)]
    assert locate("vosk", VOSK, tmp_path, catalogue=cat).is_dir()


@pytest.mark.asyncio
async def test_pull_resumes_after_connection_drops(upstream: Upstream, tmp_path: Path):
    zip_bytes = vosk_zip()
    upstream.files[f"{VOSK}.zip"] = zip_bytes
    upstream.cut_once.add(f"{VOSK}.zip")
    cat = make_catalogue(FAR_AWAY, zip_bytes)

    await pull_entry(cat.get(VOSK), tmp_path, base_url_override=upstream.base)

    (first, first_range, _), (second, second_range, status) = upstream.requests
    assert first == second == f"{VOSK}.zip" and first_range is None
    resumed_at = int(second_range.removeprefix("bytes=").rstrip("-"))
    assert 0 < resumed_at < len(zip_bytes) and status == 206
    assert not (tmp_path / ".partial").exists()
    assert locate("vosk", VOSK, tmp_path, catalogue=cat).is_dir()


@pytest.mark.asyncio
async def test_pull_restarts_when_server_ignores_range(upstream: Upstream, tmp_path: Path):
    zip_bytes = vosk_zip()
    upstream.files[f"{VOSK}.zip"] = zip_bytes
    upstream.ignore_range = True
    cat = make_catalogue(upstream.base, zip_bytes)
    part = tmp_path / ".partial" / "vosk" / VOSK / f"{VOSK}.zip.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(zip_bytes[:1000])

    await pull_entry(cat.get(VOSK), tmp_path)

    assert upstream.requests == [(f"{VOSK}.zip", "bytes=1000-", 200)]
    assert locate("vosk", VOSK, tmp_path, catalogue=cat).is_dir()  # checksum passed: no duplicate bytes


@pytest.mark.asyncio
async def test_checksum_mismatch_installs_nothing(upstream: Upstream, tmp_path: Path):
    zip_bytes = vosk_zip()
    served = bytearray(zip_bytes)
    served[len(served) // 2] ^= 0xFF  # same size, one byte flipped
    upstream.files[f"{VOSK}.zip"] = bytes(served)
    cat = make_catalogue(upstream.base, zip_bytes)
    expected, actual = sha256(zip_bytes), sha256(bytes(served))

    with pytest.raises(ChecksumMismatch) as err:
        await pull_entry(cat.get(VOSK), tmp_path)

    assert expected in str(err.value) and actual in str(err.value)
    assert isinstance(err.value, IvrError)
    assert nothing_installed(tmp_path)
    assert not list((tmp_path / ".partial").rglob("*.part"))  # bad bytes are not kept for resuming


@pytest.mark.asyncio
async def test_zip_with_path_traversal_is_rejected(upstream: Upstream, tmp_path: Path):
    cache = tmp_path / "cache"
    evil = vosk_zip(extra={"../evil": b"owned"})
    upstream.files[f"{VOSK}.zip"] = evil
    cat = make_catalogue(upstream.base, evil)

    with pytest.raises(UnsafeArchive, match=r"\.\./evil"):
        await pull_entry(cat.get(VOSK), cache)

    assert not list(tmp_path.rglob("evil"))
    assert nothing_installed(cache)
    assert not list(cache.rglob(".staging-*"))


@pytest.mark.asyncio
async def test_corrupt_zip_and_bad_structure_are_rejected(upstream: Upstream, tmp_path: Path):
    upstream.files[f"{VOSK}.zip"] = b"PK\x03\x04 definitely not a zip"
    cat = parse_catalogue(
        {"vosk": [{"name": VOSK, "language": "de", "url": f"{upstream.base}/{VOSK}.zip", "checksum": None}]}
    )
    with pytest.raises(BadArchive, match="not a valid zip"):
        await pull_entry(cat.get(VOSK), tmp_path)

    upstream.files[f"{VOSK}.zip"] = vosk_zip(drop=("graph/Gr.fst",))
    with pytest.raises(InvalidModel, match="HCLG.fst"):
        await pull_entry(cat.get(VOSK), tmp_path)
    assert nothing_installed(tmp_path)


@pytest.mark.asyncio
async def test_piper_config_without_phoneme_map_is_rejected(upstream: Upstream, tmp_path: Path):
    bad = json.dumps({"audio": {"sample_rate": 22050}}).encode()
    upstream.files[f"{VOICE}.onnx.json"] = bad
    cat = make_catalogue(upstream.base, b"x", config=bad)

    with pytest.raises(InvalidModel, match="phoneme_id_map"):
        await pull_entry(cat.get(VOICE), tmp_path)
    assert nothing_installed(tmp_path)


@pytest.mark.asyncio
async def test_http_error_names_status_and_url(upstream: Upstream, tmp_path: Path):
    cat = make_catalogue(upstream.base, b"x")  # the zip is not served: 404

    with pytest.raises(DownloadError, match=rf"{VOSK}\.zip: HTTP 404"):
        await pull(["de"], tmp_path, catalogue=cat)
    assert nothing_installed(tmp_path)


@pytest.mark.asyncio
async def test_pull_unknown_language_is_clear(tmp_path: Path):
    cat = make_catalogue(FAR_AWAY, b"x")
    with pytest.raises(PullError, match=r"'fr' is neither a language nor a model.*de"):
        await pull(["fr"], tmp_path, catalogue=cat)


# --------------------------------------------------------------------------- locate / list


def test_missing_model_says_how_to_fix(tmp_path: Path):
    cat = make_catalogue(FAR_AWAY, b"x")
    with pytest.raises(ModelMissing) as err:
        locate("vosk", VOSK, tmp_path, catalogue=cat)
    message = str(err.value)
    assert VOSK in message and str(tmp_path / "vosk" / VOSK) in message
    assert "ivr models pull de" in message

    with pytest.raises(ModelMissing, match="ivr models pull"):
        locate("piper", VOICE, tmp_path, catalogue=cat)


def test_locate_accepts_paths(tmp_path: Path):
    model = tmp_path / "my-vosk"
    zipfile.ZipFile(io.BytesIO(vosk_zip("my-vosk"))).extractall(tmp_path)
    assert locate("vosk", str(model), tmp_path / "cache") == model

    onnx = tmp_path / "voice" / "custom.onnx"
    onnx.parent.mkdir()
    onnx.write_bytes(ONNX)
    onnx.with_name("custom.onnx.json").write_bytes(CONFIG)
    assert locate("piper", str(onnx), tmp_path / "cache") == onnx

    (model / "am" / "final.mdl").unlink()
    with pytest.raises(ModelMissing, match="am/final.mdl"):
        locate("vosk", str(model), tmp_path / "cache")
    with pytest.raises(ModelMissing, match="does not exist"):
        locate("piper", str(tmp_path / "nope.onnx"), tmp_path / "cache")


@pytest.mark.asyncio
async def test_list_models_reports_installed(upstream: Upstream, tmp_path: Path):
    zip_bytes = vosk_zip()
    upstream.files[f"{VOSK}.zip"] = zip_bytes
    cat = make_catalogue(upstream.base, zip_bytes)

    before = {row["name"]: row for row in list_models(tmp_path, catalogue=cat)}
    assert not before[VOSK]["installed"] and not before[VOICE]["installed"]
    assert before[VOSK]["path"] == tmp_path / "vosk" / VOSK
    assert before[VOSK]["size"] == len(zip_bytes)

    await pull_entry(cat.get(VOICE), tmp_path)

    rows = list_models(tmp_path, catalogue=cat)
    after = {row["name"]: row for row in rows}
    assert after[VOICE]["installed"] and not after[VOSK]["installed"]
    assert after[VOICE] | {"installed": None} == {
        "name": VOICE,
        "kind": "piper",
        "language": "de",
        "default": True,
        "installed": None,
        "path": tmp_path / "piper" / VOICE / f"{VOICE}.onnx",
        "size": len(ONNX) + len(CONFIG),
    }


# --------------------------------------------------------------------------- catalogue


def test_catalogue_errors_name_file_entry_and_field(tmp_path: Path):
    path = tmp_path / "catalogue.yml"
    path.write_text(
        "vosk:\n"
        "  - name: good-model\n"
        "    language: de\n"
        "    url: https://example.org/good-model.zip\n"
        "    checksum: null\n"
        "piper:\n"
        "  - name: de_DE-x-medium\n"
        "    language: de\n"
        "    sample_rate: 22050\n"
        "    files:\n"
        "      - url: https://example.org/de_DE-x-medium.onnx\n"
        "        checksum: sha1:abc\n"
        "      - url: https://example.org/de_DE-x-medium.onnx.json\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as err:
        load_catalogue(path)
    message = str(err.value)
    assert f"{path}:12: piper.0.files.0.checksum: 'sha1:abc' is not 'sha256:<64 hex>'" in message  # file, line, field

    path.write_text("vosk:\n  - name: [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"{re.escape(str(path))}:\d+: invalid YAML"):
        load_catalogue(path)


def test_catalogue_rejects_two_defaults_and_unknown_fields():
    entry = {"language": "en", "default": True, "url": "https://e.org/a.zip"}
    with pytest.raises(ConfigError) as err:
        parse_catalogue(
            {"vosk": [{"name": "a", **entry}, {"name": "b", **entry}, {"name": "c", "langauge": "en", **entry}]}
        )
    assert "'a' and 'b' are both 'default: true' for language 'en'" in str(err.value)
    assert "<catalogue>: vosk.2.langauge: unknown key 'langauge' (did you mean 'language'?)" in str(err.value)


def test_real_catalogue_has_defaults_for_de_and_en():
    cat = load_catalogue(REPO / "voices" / "catalogue.yml")
    for language in ("de", "en"):
        vosk = cat.default_for("vosk", language)
        piper = cat.default_for("piper", language)
        assert vosk.files[0].url == f"https://alphacephei.com/vosk/models/{vosk.name}.zip"
        assert piper.sample_rate and {f.filename for f in piper.files} == {
            f"{piper.name}.onnx",
            f"{piper.name}.onnx.json",
        }
        assert all(f.url.startswith("https://huggingface.co/rhasspy/piper-voices/resolve/v1.0.0/") for f in piper.files)
    assert cat.default_for("vosk", "de").name == "vosk-model-small-de-0.15"
    assert cat.default_for("piper", "de").name == "de_DE-thorsten-medium"
    assert cat.default_for("piper", "en").name == "en_US-lessac-medium"
