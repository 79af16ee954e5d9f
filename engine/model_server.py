"""The machine's model server: one llama-server per user and model, shared by every client.

Every client that needs a local model (the language server of each editor window,
`cascode complete`, a calibration) calls `ensure_server(model, config)`. The first
one starts llama.cpp's own server (`cascode-llama-server`, built by install.sh from
the same vendored llama.cpp and CPU flags as the Python binding) as a detached
process; every other client finds it through a state file and talks to the same
process, so the weights are loaded once per machine and the cores are not shared
between several copies of a model.

Where things are (`runtime_dir()`: `$CASCODE_RUNTIME_DIR`, else
`$XDG_RUNTIME_DIR/cascode`, else `~/.local/state/cascode/run`; mode 0700, owned by
this user):

- `api-key`: a random key (mode 0600) that the server reads with `--api-key-file`
  and every client sends as a bearer token: other users of the machine cannot use
  the server even though it listens on a loopback port;
- `server-<key>.lock`: held (flock) while a client looks for the server of one
  model and, when there is none, starts it: two clients never start two servers;
- `server-<key>.json`: the running server's pid, its start time (so that a reused
  pid is not mistaken for it), host and port, the key file's path, the model and
  the settings it was started with;
- `server-<key>.log`: its log; `slots-<key>/`: its slot files (`--slot-save-path`).

`<key>` is a hash of the model file's resolved path: one server per model file
(docs/backends.md, "The model server", says why not llama-server's router mode).

The server listens on 127.0.0.1, on a free port unless `ServerConfig.port` names
one; a port taken by another program is an error naming the port and, where this
user may see it, the program. It unloads its model after `idle_s` seconds without
a request (llama-server's own `--sleep-idle-seconds`; the next request loads it
again) and is started again by the next client when it died. Threads are set once
for the machine: the number of physical cores this process may use.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import http.client
import json
import logging
import os
import re
import secrets
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

from .errors import BackendError, ModelError
from .flock import lock_within

log = logging.getLogger(__name__)

BINARY_NAME = "cascode-llama-server"
STATE_VERSION = 1
_LISTENING = re.compile(r"listening on http://([0-9.]+):(\d+)")
_started: dict[int, subprocess.Popen[bytes]] = {}  # servers this process started: reaped
_started_lock = threading.Lock()


@dataclass(frozen=True)
class ServerConfig:
    """How a model server is started. The first client's config is the one in force
    while the server runs; the others use it as it is."""

    n_ctx: int = 12288  # KV cells shared by all slots (--kv-unified)
    slots: int = 32  # parallel sequences: a stage's 2k, and other clients' requests
    threads: int | None = None  # None: the physical cores this process may use
    idle_s: int = 300  # unload the model after this long without a request (-1: never)
    port: int = 0  # 0: a free port
    batch: int = 512  # prompt tokens per batch (the in-process backend's PROMPT_BATCH)
    cache_ram_mib: int = 1024  # prompts of reused slots kept in memory (llama.cpp: 8192)
    startup_timeout_s: float = 300.0  # loading a model on a busy 2-core machine
    # Speculative decoding: "" none; "ngram" drafts from n-grams of the prompt and the
    # text so far; else the path of a smaller model of the same tokenizer that drafts.
    speculative: str = ""

    def args(self) -> list[str]:
        threads = str(self.threads or physical_cores())
        spec: list[str] = []
        if self.speculative == "ngram":
            # llama.cpp's ngram-simple defaults (a 12-token key, 48-token drafts) drafted
            # nothing on HumanEval's greedy answers here; a 3-token key with 8-token
            # drafts drafts (60 tokens over 6 problems, 20 accepted on the 1.5B).
            spec = ["--spec-type", "ngram-simple", "--spec-ngram-simple-size-n", "3",
                    "--spec-ngram-simple-size-m", "8"]
        elif self.speculative:
            spec = ["--spec-type", "draft-simple", "--spec-draft-model", self.speculative,
                    "-td", threads, "-tbd", threads]
        return [*spec,
            "-c", str(self.n_ctx), "-np", str(self.slots), "--kv-unified",
            "-t", threads, "-tb", threads, "-b", str(self.batch), "-ub", str(self.batch),
            "--sleep-idle-seconds", str(self.idle_s), "--metrics", "--slots",
            # An idle slot keeps its cells (llama.cpp's default moves them to the
            # memory cache at every new task, and a request pinned to an emptied slot
            # then evaluates its whole prompt): the backend copies a stage's shared
            # opening into a slot and pins the request to it.
            "--no-cache-idle-slots", "--cache-ram", str(self.cache_ram_mib),
            # llama.cpp's default polling (50) stays: with `--poll 0` two servers at once
            # were a little faster (2 cores, a 1.5B and a 0.5B request together: 11.3 and
            # 8.8 s against 12.9 and 10.2 s), but one balanced-tier request alone took
            # 72, 16 and 31 s against 44, 19 and 21 s (three real-code functions).
        ]


@dataclass(frozen=True)
class Endpoint:
    """A running model server, as a client reaches it."""

    model: str
    host: str
    port: int
    pid: int
    proc_start: int
    key_file: str
    log: str
    started_at: float
    config: dict[str, Any]

    @property
    def address(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def slot_dir(self) -> Path:
        """Where the server reads and writes slot files (`--slot-save-path`)."""
        return _paths(Path(self.model), Path(self.log).parent)["slots"]

    def api_key(self) -> str:
        return read_api_key(Path(self.key_file))

    def alive(self) -> bool:
        """Whether the process is still the one that was started (not a reused pid)."""
        return proc_start_time(self.pid) == self.proc_start

    # What a backend needs to talk to it (engine/backends/remote.py has the same for a
    # server elsewhere).
    read_timeout: ClassVar[float | None] = None  # a stream waits as long as the server computes
    can_copy_slots: ClassVar[bool] = True  # its slot files are in `slot_dir`, on this machine

    def connection(self, timeout: float | None) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key()}", "Content-Type": "application/json"}

    def path(self, path: str) -> str:
        return path

    @property
    def slots(self) -> int:
        return int(self.config.get("slots", 0))


# ---------------------------------------------------------------- places


def runtime_dir() -> Path:
    """This user's private directory for the servers' state (created 0700)."""
    env = os.environ.get("CASCODE_RUNTIME_DIR")
    if env:
        path = Path(env)
    elif os.environ.get("XDG_RUNTIME_DIR"):
        path = Path(os.environ["XDG_RUNTIME_DIR"]) / "cascode"
    else:
        import platformdirs

        # Not /tmp/runtime-UID (platformdirs' fallback): a shared directory where
        # another user could have made the folder first.
        path = Path(platformdirs.user_state_dir("cascode")) / "run"
    return private_dir(path)


def private_dir(path: Path) -> Path:
    """`path`, made if needed, owned by this user and closed to others (0700)."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    info = path.stat()
    if info.st_uid != os.getuid():
        raise BackendError(f"the model server's directory {path} belongs to another user")
    if stat.S_IMODE(info.st_mode) & 0o077:
        os.chmod(path, 0o700)
    return path


def server_binary() -> Path:
    """The llama-server that install.sh built for this CPU ($CASCODE_LLAMA_SERVER
    overrides)."""
    env = os.environ.get("CASCODE_LLAMA_SERVER")
    path = Path(env) if env else Path(sys.prefix) / "bin" / BINARY_NAME
    if not os.access(path, os.X_OK):
        raise ModelError(
            f"the model server {path} is not installed: run ./install.sh "
            "(it builds llama-server from the same llama.cpp as the Python binding)"
        )
    return path


def physical_cores() -> int:
    """Physical cores among the CPUs this process may use (hyperthreads count once)."""
    allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()
    cores: set[tuple[str, str]] = set()
    try:
        cpu, phys = -1, "0"
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = (p.strip() for p in line.partition(":"))
            if key == "processor":
                cpu = int(value)
            elif key == "physical id":
                phys = value
            elif key == "core id" and (not allowed or cpu in allowed):
                cores.add((phys, value))
    except (OSError, ValueError):
        cores = set()
    return len(cores) or len(allowed) or os.cpu_count() or 1


def model_key(model: Path) -> str:
    return hashlib.sha256(str(model.resolve()).encode()).hexdigest()[:16]


def _paths(model: Path, root: Path) -> dict[str, Path]:
    key = model_key(model)
    return {
        "lock": root / f"server-{key}.lock",
        "state": root / f"server-{key}.json",
        "log": root / f"server-{key}.log",
        "slots": root / f"slots-{key}",
    }


# ---------------------------------------------------------------- the API key


def api_key_file(root: Path | None = None) -> Path:
    """The key file (0600, this user's), made on first use."""
    path = (root or runtime_dir()) / "api-key"
    try:
        info = path.stat()
    except FileNotFoundError:
        info = None
    if info is not None and (info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) & 0o077):
        path.unlink()  # readable by others: a key nobody else has seen replaces it
        info = None
    if info is None:
        tmp = path.with_name(f".api-key.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32) + "\n")
        try:
            os.link(tmp, path)  # the first writer wins; a racing one reads its key
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path


def read_api_key(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError as e:
        raise BackendError(f"cannot read the model server's key {path}: {e.strerror}") from None


# ---------------------------------------------------------------- processes


def proc_start_time(pid: int) -> int | None:
    """The process's start time in clock ticks (None: no such process, or a zombie)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rfind(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def _reap() -> None:
    with _started_lock:
        for pid, proc in list(_started.items()):
            if proc.poll() is not None:
                del _started[pid]


@contextlib.contextmanager
def _locked(path: Path, timeout: float) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            lock_within(fd, timeout, str(path))
        except TimeoutError:
            raise BackendError(
                f"another client has held {path} for {timeout:.0f} s while starting "
                "the model server; is it stuck?"
            ) from None
        yield
    finally:
        os.close(fd)  # releases the lock


# ---------------------------------------------------------------- whose turn


@contextlib.contextmanager
def turn(key: str, root: Path | None = None, cancel: Any = None,
         poll_s: float = 0.02) -> Iterator[float]:
    """Hold this machine's cores for a request to the server `key` names (`model_key` of
    its model file): requests to the same server run together (its batches serve them
    all), a request to another server waits until none runs. Two model servers at once on the
    same cores are slower than one after the other (2 cores: a 1.5B and a 0.5B request
    at once took 12.9 and 10.2 s, against 5.2 and 2.4 s alone: 7.6 s in turn).

    A client holds a shared flock on `turn-<key>.lock` while its request runs and on
    `want-<key>.lock` while it waits, and decides under `turn.lock` (`_may_enter`), which
    holds the key whose turn began last. Flocks go with their process: a killed client
    holds nothing. Yields the seconds it
    waited; `cancel` (a cancel token) is checked while it waits."""
    import fcntl

    root = root or runtime_dir()
    mine, want = root / f"turn-{key}.lock", root / f"want-{key}.lock"
    fd = os.open(mine, os.O_RDWR | os.O_CREAT, 0o600)
    wfd = os.open(want, os.O_RDWR | os.O_CREAT, 0o600)
    os.utime(fd)  # in use: `_sweep` leaves it
    os.utime(wfd)
    t0 = time.monotonic()
    try:
        fcntl.flock(wfd, fcntl.LOCK_SH)
        while True:
            gate = os.open(root / "turn.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(gate, fcntl.LOCK_EX)
                if _may_enter(root, key, mine, want, gate):
                    fcntl.flock(fd, fcntl.LOCK_SH)
                    break
            finally:
                os.close(gate)
            if cancel is not None:
                cancel.raise_if_cancelled()
            time.sleep(poll_s)
        os.close(wfd)
        wfd = -1
        yield time.monotonic() - t0
    finally:
        if wfd >= 0:
            os.close(wfd)
        os.close(fd)  # releases the turn


def _may_enter(root: Path, key: str, mine: Path, want: Path, gate: int) -> bool:
    """Under the gate: no other server's turn runs, and either no other server's client
    waits or this server's turn did not begin last (turns alternate); then a turn that
    begins records its key."""
    _sweep(root)
    if any(_held(p) for p in root.glob("turn-*.lock") if p != mine):
        return False
    others_wait = any(_held(p) for p in root.glob("want-*.lock") if p != want)
    if not others_wait:
        if not _held(mine):
            _record(gate, key)
        return True
    if _held(mine) or os.pread(gate, 64, 0).decode(errors="replace") == key:
        return False  # another server's clients wait: this one's turn has been
    _record(gate, key)
    return True


STALE_TURN_S = 86400.0  # a turn file nobody has opened for a day is a server gone


def _sweep(root: Path) -> None:
    """Under the gate: remove the turn files of servers unused for a day (a server on
    another port each time, as tests start them, would leave one file per port)."""
    cutoff = time.time() - STALE_TURN_S
    for path in [*root.glob("turn-*.lock"), *root.glob("want-*.lock")]:
        try:
            if path.stat().st_mtime < cutoff and not _held(path):
                path.unlink()
        except OSError:
            pass


def _record(gate: int, key: str) -> None:
    os.ftruncate(gate, 0)
    os.pwrite(gate, key.encode(), 0)


def _held(path: Path) -> bool:
    """Whether some client holds `path` (a turn file) now."""
    import fcntl

    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def read_state(model: Path, root: Path | None = None) -> Endpoint | None:
    """The state file's server for `model`, whether or not it still runs."""
    return _read_endpoint(_paths(model, root or runtime_dir())["state"])


def _read_endpoint(path: Path) -> Endpoint | None:
    try:
        data = json.loads(path.read_text())
        if data.pop("version", None) != STATE_VERSION:
            return None
        return Endpoint(**data)
    except (OSError, ValueError, TypeError):
        return None


def running_servers(root: Path | None = None) -> list[Endpoint]:
    """The servers this user's state files name whose process is still the one started
    (what `cascode doctor` lists)."""
    found = (_read_endpoint(p) for p in sorted((root or runtime_dir()).glob("server-*.json")))
    return [e for e in found if e is not None and e.alive()]


def _write_state(path: Path, endpoint: Endpoint) -> None:
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"version": STATE_VERSION, **asdict(endpoint)}, indent=1) + "\n")
    os.replace(tmp, path)


def ensure_server(
    model: Path,
    config: ServerConfig | None = None,
    *,
    binary: Path | None = None,
    root: Path | None = None,
) -> Endpoint:
    """The running server of `model`, started first when there is none (or it died)."""
    config = config or ServerConfig()
    root = private_dir(root) if root else runtime_dir()
    paths = _paths(model, root)
    _reap()
    current = read_state(model, root)
    if current is not None and current.alive():
        return current
    with _locked(paths["lock"], config.startup_timeout_s + 30):
        # Another client may have started it while this one waited for the lock.
        current = read_state(model, root)
        if current is not None and current.alive():
            return current
        endpoint = _start(model, config, binary or server_binary(), root, paths)
        _write_state(paths["state"], endpoint)
        return endpoint


def stop_server(model: Path, root: Path | None = None, timeout: float = 10.0) -> bool:
    """Stop the server of `model` if it runs (SIGTERM, then SIGKILL); True if one ran."""
    root = root or runtime_dir()
    paths = _paths(model, root)
    with _locked(paths["lock"], 60):
        current = read_state(model, root)
        paths["state"].unlink(missing_ok=True)
        if current is None or not current.alive():
            return False
        _terminate(current.pid, current.proc_start, timeout)
        return True


def stop_servers(root: Path | None = None) -> None:
    """Stop every server running under the runtime directory `root` (a benchmark's or a
    test's own)."""
    for ep in running_servers(root):
        stop_server(Path(ep.model), root=root)


def _terminate(pid: int, started: int, timeout: float) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while proc_start_time(pid) == started and time.monotonic() < deadline:
        _reap()
        time.sleep(0.05)
    if proc_start_time(pid) == started:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    _reap()


# ---------------------------------------------------------------- starting one


def _child_env() -> dict[str, str]:
    # llama-server reads LLAMA_ARG_* (LLAMA_ARG_HOST=0.0.0.0 would expose it) and
    # LLAMA_API_KEY from the environment: only the command line decides here.
    return {k: v for k, v in os.environ.items() if not k.startswith(("LLAMA_", "GGML_"))}


def _start(
    model: Path, config: ServerConfig, binary: Path, root: Path, paths: dict[str, Path]
) -> Endpoint:
    host = "127.0.0.1"
    if config.port:
        check_port_free(host, config.port)
    key_file = api_key_file(root)
    paths["slots"].mkdir(mode=0o700, exist_ok=True)
    for old in paths["slots"].iterdir():
        old.unlink()
    cmd = [
        str(binary), "-m", str(model.resolve()), "--host", host, "--port", str(config.port),
        "--api-key-file", str(key_file), "--slot-save-path", str(paths["slots"]),
        *config.args(),
    ]
    log.info("starting the model server: %s", " ".join(cmd))
    t0 = time.perf_counter()
    with open(paths["log"], "wb") as out:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            env=_child_env(), start_new_session=True, close_fds=True,
        )
    with _started_lock:
        _started[proc.pid] = proc
    try:
        port = _wait_ready(proc, model, host, config, paths["log"], read_api_key(key_file))
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait()
        raise
    started = proc_start_time(proc.pid)
    if started is None:
        raise BackendError(_died_line(proc, paths["log"], model))
    log.info("model server for %s up in %.1f s (pid %d, port %d)", model.name,
             time.perf_counter() - t0, proc.pid, port)
    return Endpoint(
        model=str(model.resolve()), host=host, port=port, pid=proc.pid, proc_start=started,
        key_file=str(key_file), log=str(paths["log"]), started_at=time.time(),
        config=asdict(config),
    )


def _wait_ready(
    proc: subprocess.Popen[bytes],
    model: Path,
    host: str,
    config: ServerConfig,
    log_path: Path,
    key: str,
) -> int:
    """Wait until the server answers /health with 200 (model loaded); its port."""
    deadline = time.monotonic() + config.startup_timeout_s
    port = config.port
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BackendError(_died_line(proc, log_path, model))
        if not port:
            match = _LISTENING.search(_tail(log_path, 64_000))
            port = int(match.group(2)) if match else 0
        if port:
            status, _ = http_get(host, port, "/health", key, timeout=2.0)
            if status == 200:
                return port
        time.sleep(0.1)
    raise BackendError(
        f"the model server did not answer within {config.startup_timeout_s:.0f} s "
        f"(its log: {log_path})"
    )


def _died_line(proc: subprocess.Popen[bytes], log_path: Path, model: Path) -> str:
    code = proc.returncode
    tail = _tail(log_path, 4000)
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        if name in ("SIGILL", "SIGSEGV", "SIGBUS"):
            from .backends.llama_build import read_cpu
            from .backends.llama_check import build_stamp, failure_line

            machine, flags = read_cpu()
            return failure_line(f"in the model server died of {name}", model, machine, flags,
                                build_stamp())
        return f"the model server died of {name} while starting (its log: {log_path})"
    bind = re.search(r"couldn't bind HTTP server socket, hostname: (\S+), port: (\d+)", tail)
    if bind:
        return port_taken_line(bind.group(1).rstrip(","), int(bind.group(2)))
    last = [line for line in tail.splitlines() if line.strip()][-1:] or ["no output"]
    return f"the model server exited with status {code} while starting: {last[0]} ({log_path})"


def _tail(path: Path, size: int) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - size))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


# ---------------------------------------------------------------- ports


def check_port_free(host: str, port: int) -> None:
    """BackendError naming the port (and its program, where visible) when it is taken."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise BackendError(port_taken_line(host, port)) from None
            raise BackendError(f"cannot listen on {host}:{port}: {e.strerror}") from None


def port_taken_line(host: str, port: int) -> str:
    owner = port_owner(port)
    who = f" by {owner}" if owner else " by another program"
    return (f"the model server cannot listen on {host}:{port}: the port is already taken{who}; "
            "choose another port (0 picks a free one)")


def port_owner(port: int) -> str:
    """'pid N (name)' of the process listening on a TCP port, where this user may see it."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) > 9 and parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(parts[9])
    if not inodes:
        return ""
    wanted = {f"socket:[{i}]" for i in inodes}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                if os.readlink(fd) in wanted:
                    name = (proc / "comm").read_text().strip()
                    return f"pid {proc.name} ({name})"
        except OSError:
            continue
    return ""


# ---------------------------------------------------------------- plain HTTP


def http_get(host: str, port: int, path: str, key: str, timeout: float = 5.0
             ) -> tuple[int, Any]:
    """(status, parsed JSON or None) of a GET; status 0 when nothing answered."""
    return _http("GET", host, port, path, {"Authorization": f"Bearer {key}"}, None, timeout)


def http_post(host: str, port: int, path: str, key: str, body: Any, timeout: float = 30.0
              ) -> tuple[int, Any]:
    """(status, parsed JSON or None) of a POST of JSON; status 0 when nothing answered."""
    return _http("POST", host, port, path, {"Authorization": f"Bearer {key}",
                                            "Content-Type": "application/json"},
                 json.dumps(body).encode(), timeout)


def _http(method: str, host: str, port: int, path: str, headers: dict[str, str],
          body: bytes | None, timeout: float) -> tuple[int, Any]:
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
    except OSError:
        return 0, None
    finally:
        conn.close()
    try:
        return response.status, json.loads(data) if data else None
    except ValueError:
        return response.status, None
