"""Run a real Triton Inference Server locally (the binary bundled in the nvidia-pytriton wheel) or address a remote one.

Why the environment set-up below matters (see docs/triton-local.md):
- the python backend needs a backend directory with libtriton_python.so, triton_python_backend_utils.py and the
  stub built for the running interpreter's minor version;
- the stub finds site-packages through ``python3`` on PATH, so the running interpreter's bin dir goes first;
- LD_LIBRARY_PATH needs the wheel's bundled libs and this interpreter's libpython directory.
No server may outlive its parent: the child gets PR_SET_PDEATHSIG (set by a launch shim) and we also stop it at
interpreter exit.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from igniter.errors import UserError
from igniter.ownership import output_errors

HOST = "127.0.0.1"
# Every tritonserver igniter starts carries this tag in its environment (readable in /proc/PID/environ): the
# deployment's state directory, or "process:<pid>" for a server that dies with the igniter process that started it.
# Nothing is signalled unless it carries the expected tag and its command line is tritonserver (owned_by).
OWNER_ENV = "IGNITER_OWNER"


@dataclass(frozen=True)
class Endpoints:
    """Where a Triton server listens, as host:port strings (no scheme)."""

    http: str
    grpc: str
    metrics: str | None = None
    pid: int | None = None

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_url(cls, url: str) -> "Endpoints":
        """Parse a remote server address.

        Accepts ``http://HOST:PORT`` (gRPC and metrics assumed on Triton's default layout PORT+1, PORT+2) or an
        explicit ``http=HOST:PORT,grpc=HOST:PORT[,metrics=HOST:PORT]``.
        """
        if "=" in url:
            parts = dict(p.split("=", 1) for p in url.split(",") if "=" in p)
            if "grpc" not in parts or "http" not in parts:
                raise UserError(f"server address {url!r} lacks http= or grpc=", "give http=HOST:PORT,grpc=HOST:PORT")
            for key in ("http", "grpc", "metrics"):
                if key in parts:
                    try:
                        _host_port(f"http://{parts[key]}", url)
                    except UserError:
                        raise UserError(f"server address {url!r}: {key}={parts[key]!r} is not HOST:PORT",
                                        "give http=HOST:PORT,grpc=HOST:PORT[,metrics=HOST:PORT]") from None
            return cls(http=parts["http"], grpc=parts["grpc"], metrics=parts.get("metrics"))
        host, port = _host_port(url if "://" in url else f"http://{url}", url)
        if port + 2 > 65535:
            raise UserError(f"server address {url!r}: port {port} leaves no room for gRPC and metrics on PORT+1, "
                            "PORT+2", "give the three endpoints as http=HOST:PORT,grpc=HOST:PORT,metrics=HOST:PORT")
        return cls(http=f"{host}:{port}", grpc=f"{host}:{port + 1}", metrics=f"{host}:{port + 2}")


def _host_port(url: str, given: str) -> tuple[str, int]:
    """(host, port) of http://HOST:PORT, or a UserError naming the address as given."""
    try:
        parsed = urlparse(url)
        port = parsed.port            # ValueError when not a number in 0..65535
    except ValueError:
        port, parsed = None, None
    if parsed is None or parsed.scheme != "http" or not parsed.hostname or not port or \
            parsed.path not in ("", "/") or parsed.query or parsed.username:
        raise UserError(f"server address {given!r} is not http://HOST:PORT", "give e.g. http://127.0.0.1:8000")
    return parsed.hostname, port


@dataclass
class ServerOptions:
    """How to launch one local Triton process."""

    repo: Path
    models: list[str] = field(default_factory=list)
    log_path: Path | None = None
    env: dict[str, str] = field(default_factory=dict)  # e.g. CUDA_MPS_ACTIVE_THREAD_PERCENTAGE
    cpus: list[int] | None = None  # CPU affinity (the CPU-host resource share)
    host: str = HOST
    startup_timeout_s: float = 120.0
    exit_timeout_s: int = 5
    gpu: bool = False  # allow GPU metrics (only on GPU hosts)
    # detached: outlives this process (apply's managed servers, recorded by pid in the state file and stopped by
    # `igniter down`); otherwise the server dies with its parent.
    detached: bool = False
    owner: str = ""  # the OWNER_ENV tag; default "process:<this pid>"
    # argv run in front of tritonserver (a profiler that must launch the process it observes: ncu)
    command_prefix: list[str] = field(default_factory=list)


def pytriton_root() -> Path:
    try:
        import pytriton  # noqa: PLC0415 - optional heavy import only when a server is started
    except ImportError as err:
        raise UserError("the nvidia-pytriton package is not installed", "pip install nvidia-pytriton") from err
    root = Path(pytriton.__file__).resolve().parent / "tritonserver"
    if not (root / "bin" / "tritonserver").exists():
        raise UserError(f"no tritonserver binary under {root}", "reinstall nvidia-pytriton (pip install -U nvidia-pytriton)")
    return root


def backend_dir() -> Path:
    """A backend directory laid out as Triton expects, made of symlinks into the wheel (built once per wheel)."""
    root = pytriton_root()
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = root / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.exists():
        raise UserError(f"no python backend stub for Python {version} in the pytriton wheel", "use Python 3.8-3.13")
    # a stable digest: str hash() is salted per process, which made every process build its own directory
    digest = hashlib.sha1(str(root).encode()).hexdigest()[:8]
    target = Path(tempfile.gettempdir()) / f"igniter-backends-{digest}-{version}"
    python_dir = target / "python"
    if not (python_dir / "triton_python_backend_stub").exists():
        staging = Path(tempfile.mkdtemp(prefix="igniter-backends-"))
        (staging / "python").mkdir()
        for src in (root / "backends" / "python" / "libtriton_python.so",
                    root / "backends" / "python" / "triton_python_backend_utils.py", stub):
            (staging / "python" / src.name).symlink_to(src)
        try:
            os.replace(staging, target)
        except OSError:  # another process won the race; theirs is identical
            pass
    return target


def server_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    libs = Path(pytriton_root()).parent.parent / "nvidia_pytriton.libs"
    ld = [str(libs), sysconfig.get_config_var("LIBDIR") or ""]
    env["LD_LIBRARY_PATH"] = os.pathsep.join([p for p in ld if p] + [env.get("LD_LIBRARY_PATH", "")]).rstrip(os.pathsep)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.update(extra or {})
    return env


def free_port(host: str = HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


# The child is launched through this shim instead of a preexec_fn: a preexec_fn forces a real fork(), and gRPC's
# fork handlers can deadlock inside it when a channel is shutting down; without one, Python spawns with vfork.
# The shim sets the parent-death signal (TERM: the server then stops its python stubs), exits if the parent already
# died, pins CPUs (stubs inherit the affinity), then execs tritonserver. argv: die_with_parent parent_pid cpus cmd...
_LAUNCH_SHIM = """
import ctypes, os, signal, sys
die, parent, cpus, cmd = sys.argv[1] == "1", int(sys.argv[2]), sys.argv[3], sys.argv[4:]
if die:
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)
    if os.getppid() != parent:
        sys.exit(1)
if cpus:
    os.sched_setaffinity(0, [int(c) for c in cpus.split(",")])
os.execv(cmd[0], cmd)
"""


def _launch_command(command: list[str], cpus: list[int] | None, die_with_parent: bool) -> list[str]:
    cpu_list = ",".join(str(c) for c in cpus or [])
    return [sys.executable, "-I", "-S", "-c", _LAUNCH_SHIM, "1" if die_with_parent else "0", str(os.getpid()),
            cpu_list, *command]


def launch_command(command: list[str], die_with_parent: bool) -> list[str]:
    """argv that runs ``command`` through the launch shim (another process igniter owns: the front door)."""
    return _launch_command(command, None, die_with_parent)


_RUNNING: set["LocalServer"] = set()


@atexit.register
def _stop_all() -> None:
    for server in list(_RUNNING):
        server.stop()


class LocalServer:
    """A tritonserver child process; use as a context manager.

    >>> with LocalServer(ServerOptions(repo=Path("triton_repo"), models=["convnet"])) as server:
    ...     server.endpoints.grpc
    """

    def __init__(self, options: ServerOptions):
        self.options = options
        self.process: subprocess.Popen | None = None
        self.endpoints: Endpoints | None = None
        self.log_path: Path = options.log_path or new_log_file()
        # a temp log igniter made is removed when igniter stops the server it logged; one that explains a failed
        # start or a server that died on its own stays, since the error line points at it
        self._temp_log = options.log_path is None
        self._start_failed = False

    def __enter__(self) -> "LocalServer":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def command(self, http: int, grpc: int, metrics: int) -> list[str]:
        opts = self.options
        cmd = [
            str(pytriton_root() / "bin" / "tritonserver"),
            f"--model-repository={Path(opts.repo).resolve()}",
            f"--backend-directory={backend_dir()}",
            "--model-control-mode=explicit",
            "--disable-auto-complete-config",
            "--strict-readiness=true",
            f"--http-address={opts.host}", f"--http-port={http}",
            f"--grpc-address={opts.host}", f"--grpc-port={grpc}",
            f"--metrics-address={opts.host}", f"--metrics-port={metrics}",
            f"--allow-gpu-metrics={'true' if opts.gpu else 'false'}",
            "--metrics-config=summary_latencies=true",
            "--metrics-interval-ms=500",
            f"--exit-timeout-secs={opts.exit_timeout_s}",
            "--log-verbose=0",
        ]
        return [*opts.command_prefix, *cmd, *(f"--load-model={m}" for m in opts.models)]

    def start(self) -> Endpoints:
        self.spawn()
        return self.wait_ready()

    def spawn(self) -> None:
        """Start the process without waiting for it; ``process`` and ``endpoints`` are set when this returns (a
        caller that must never lose the pid holds signals back around this call only)."""
        repo = Path(self.options.repo)
        if not repo.is_dir():
            raise UserError(f"model repository {str(repo)!r} is not a directory", "pass --repo pointing at a Triton model repository (e.g. triton_repo)")
        for model in self.options.models:
            if not (repo / model / "config.pbtxt").exists():
                raise UserError(f"model {model!r} has no config.pbtxt in {repo}", f"choose one of: {', '.join(list_repo_models(repo)) or '(none)'}")
        ports = [free_port(self.options.host) for _ in range(3)]
        self._log_start = ServerLog(self.log_path).size()  # the file may hold an earlier run's lines
        with output_errors(self.log_path, "server log"):
            log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            _launch_command(self.command(*ports), self.options.cpus, die_with_parent=not self.options.detached),
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=server_env({**self.options.env, OWNER_ENV: self.options.owner or f"process:{os.getpid()}"}),
            start_new_session=True,
        )
        log.close()
        if not self.options.detached:
            _RUNNING.add(self)
        host = self.options.host
        self.endpoints = Endpoints(http=f"{host}:{ports[0]}", grpc=f"{host}:{ports[1]}", metrics=f"{host}:{ports[2]}", pid=self.process.pid)

    def wait_ready(self) -> Endpoints:
        """Wait until the spawned server is ready; one that fails to get there is stopped."""
        try:
            self._wait_ready()
        except BaseException:
            self._start_failed = True
            self.stop()
            raise
        return self.endpoints

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.options.startup_timeout_s
        url = f"http://{self.endpoints.http}/v2/health/ready"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise UserError(f"tritonserver exited with code {self.process.returncode} at start: {self.log_tail()}",
                                f"read the full log at {self.log_path}")
            if http_ok(url):
                return
            failure = ServerLog(self.log_path).load_failure(since=self._log_start)
            if failure:  # the server might wait forever (a python model without model.py): say it now
                raise UserError(f"tritonserver could not load a model: {failure}",
                                f"fix the model in {self.options.repo} (full log: {self.log_path})")
            time.sleep(0.1)
        raise UserError(f"tritonserver was not ready after {self.options.startup_timeout_s:.0f} s: {self.log_tail()}",
                        f"read the full log at {self.log_path}")

    def log_tail(self) -> str:
        return ServerLog(self.log_path).tail()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        """SIGTERM the server's process group (server + python stubs), SIGKILL after the exit timeout."""
        _RUNNING.discard(self)
        if self.process is None or self.process.poll() is not None:
            return
        stop_process_group(self.process.pid, self.options.exit_timeout_s + 5, self.process.wait)
        if self._temp_log and not self._start_failed:
            self.log_path.unlink(missing_ok=True)


def new_log_file() -> Path:
    """A fresh temp file for a server log (mkstemp: never an existing file)."""
    fd, path = tempfile.mkstemp(prefix="tritonserver-", suffix=".log")
    os.close(fd)  # the server's stdout reopens it by path
    return Path(path)


def stop_process_group(pgid: int, timeout_s: float, wait=None) -> None:
    """SIGTERM a server's process group, SIGKILL what is left after ``timeout_s`` (also stray stubs)."""
    _signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if wait is not None:
            try:
                wait(timeout=0.1)
                break
            except subprocess.TimeoutExpired:
                continue
        elif not pid_alive(pgid):
            break
        time.sleep(0.1)
    _signal_group(pgid, signal.SIGKILL)
    if wait is not None:
        wait(timeout=10)


def pid_alive(pid: int | None) -> bool:
    """True while ``pid`` runs (a zombie counts as dead)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except OSError:
        return False


def owner_tag(pid: int) -> str | None:
    """The OWNER_ENV tag of ``pid`` when it is a tritonserver leading its own process group, else None."""
    try:
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0]
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        leads_group = os.getpgid(pid) == pid  # we signal the whole group (server + python stubs)
    except OSError:  # gone, or another user's process: not ours either way
        return None
    if Path(os.fsdecode(argv0)).name != "tritonserver" or not leads_group:
        return None
    prefix = os.fsencode(f"{OWNER_ENV}=")
    tags = [os.fsdecode(item[len(prefix):]) for item in environ if item.startswith(prefix)]
    return tags[0] if tags else None


def deployment_owner(state_dir: Path) -> str:
    """The OWNER_ENV tag of every server a deployment starts: its resolved state directory."""
    return str(Path(state_dir).resolve())


def owned_by(pid: object, owner: str) -> bool:
    """True only for a live tritonserver that igniter started with tag ``owner``: the check before any signal."""
    return type(pid) is int and pid > 0 and pid_alive(pid) and owner_tag(pid) == owner


def owned_servers_under(root: Path) -> list[int]:
    """Pids of the live tritonservers igniter started for a deployment whose state directory lies under ``root``."""
    base = Path(root).resolve()
    pids = []
    for entry in Path("/proc").iterdir():
        tag = owner_tag(int(entry.name)) if entry.name.isdigit() else None
        inside = tag is not None and tag.startswith("/") and (Path(tag) == base or base in Path(tag).parents)
        if inside and pid_alive(int(entry.name)):
            pids.append(int(entry.name))
    return sorted(pids)


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


@dataclass(frozen=True)
class ServerLog:
    """A server's log file; Triton's reasons for rejecting a model only appear there."""

    path: Path

    def size(self) -> int:
        try:
            return Path(self.path).stat().st_size
        except OSError:
            return 0

    def tail(self, lines: int = 5, since: int = 0) -> str:
        """The last error-looking lines written after byte ``since``, without glog prefixes."""
        rows = self._rows(since, last=True)
        if rows is None:
            return "(no log)"
        errors = [r for r in rows if r.startswith("E") or "error" in r.lower() or "failed" in r.lower()]
        return " | ".join(_message(r) for r in (errors or rows)[-lines:])

    def load_failure(self, since: int = 0) -> str | None:
        """The first line after byte ``since`` saying a model cannot load, without its glog prefix."""
        for row in self._rows(since) or []:
            if any(sign in row.lower() for sign in _LOAD_FAILURE_SIGNS):
                return _message(row)
        return None

    def _rows(self, since: int, last: bool = False) -> list[str] | None:
        """Lines after byte ``since``: the first (or ``last``) _LOG_READ_LIMIT bytes of them."""
        try:
            with open(self.path, "rb") as fh:
                fh.seek(max(since, self.size() - _LOG_READ_LIMIT) if last else since)
                text = fh.read(_LOG_READ_LIMIT).decode(errors="replace")
        except OSError:
            return None
        return [r.strip() for r in text.splitlines() if r.strip()]


# What Triton, or the python backend's stub, logs when a model cannot load. After the stub's lines the server waits
# on a stub that already exited and never becomes ready, so the start watches for them instead of timing out.
_LOAD_FAILURE_SIGNS = ("failed to load '", "failed to preinitialize python stub", "failed to initialize python stub")
_LOG_READ_LIMIT = 4 * 1024 * 1024


def _message(row: str) -> str:
    return " ".join(row.split("] ", 1)[-1].strip('"').split())


def http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status == 200
    except (urllib.error.URLError, ConnectionError, OSError):
        return False


def list_repo_models(repo: Path) -> list[str]:
    return sorted(p.name for p in Path(repo).iterdir() if (p / "config.pbtxt").exists()) if Path(repo).is_dir() else []
