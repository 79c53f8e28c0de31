"""A stateful, sandboxed Python session for code-interpreter tool calls.

:class:`CodeInterpreter` runs model-written code in a separate process, one session per
interpreter object: variables, imports and files persist from one :meth:`~CodeInterpreter.run`
to the next, as in a notebook.  :meth:`~CodeInterpreter.run` never raises for what the
code does: errors, timeouts and crashes come back in the :class:`ExecutionResult`, and
``str(result)`` is the text to give back to the model (stdout, stderr, the value of the
last expression, the traceback)::

    with CodeInterpreter() as ci:
        ci.run("import math\\nr = 2")
        print(ci.run("math.pi * r ** 2"))     # 12.566370614359172

What the sandbox enforces
-------------------------
The session process (``functionary/_sandbox_child.py``, standard library only) sets
itself up before it reads any code, then reports what it enforced and what it could not
(:attr:`CodeInterpreter.sandbox`; each result's :attr:`~ExecutionResult.warnings` repeats
the degradations, and they are logged):

* **Network**: a new network namespace (``unshare(CLONE_NEWNET)``) with no interface up,
  so every connection fails, 127.0.0.1 included (``ENETUNREACH``); abstract unix sockets
  of the host are out of reach too.
* **Filesystem**: a new mount namespace in which every mount is remounted read-only and
  ``nosuid``, the working directory is bind-mounted read-write (``nosuid,nodev``),
  ``/run`` is covered by an empty read-only tmpfs (host daemons' unix sockets), and
  ``/proc`` is a fresh procfs of the session's pid namespace.  Writing anywhere but the
  working directory fails with ``EROFS`` (device nodes such as ``/dev/null`` stay
  writable).  When the parent is root, a directory on the way to the Python installation
  that other users cannot traverse (``/root`` for a pyenv build) is covered by an empty
  tmpfs and only the installation is bound back, so the unprivileged uid can import the
  standard library while the rest of that directory stays hidden.
* **Privileges**: when the parent is root, the session switches to ``uid``/``gid``
  (``nobody``, 65534, by default; the working directory is chowned to it) with no
  capabilities, so it cannot undo the mounts or reach root-only files.  If that uid still
  cannot read the interpreter's ``sys.path``, the session keeps uid 0 with every
  capability and the whole bounding set dropped (reported as a degradation: root-only
  files are readable, ``RLIMIT_NPROC`` does not apply).  Without root, an unprivileged
  user namespace provides the same namespaces and every capability is dropped after the
  set-up.  ``PR_SET_NO_NEW_PRIVS`` stops set-uid programs from regaining privileges.
* **Processes**: a new pid namespace; the session is its pid 1, so killing the session
  kills every process the code started.
* **Resources** (``setrlimit``): address space (``memory_limit``; an allocation beyond it
  raises ``MemoryError`` in the code, or kills the session), CPU seconds per run
  (``cpu_limit``; re-armed before each run with ``prlimit``; at the soft limit the
  session's ``SIGXCPU`` handler ends it, and the hard limit one second later sends
  ``SIGKILL``), file size (``file_size_limit``), open files, no core dumps,
  and ``max_processes`` when a dedicated uid is used.
* **Time**: a wall-clock ``timeout`` per run (60 s by default); the parent kills the
  session (``SIGKILL`` to its pid 1) when it expires.
* **Environment**: a minimal environment (``PATH``, ``HOME`` and ``TMPDIR`` = the working
  directory, ``LANG``, single-threaded BLAS); the parent's variables (API keys...) are
  not passed on.

How it degrades: with ``isolation="auto"`` (the default), a step that the kernel refuses
(no root and no unprivileged user namespaces, a mount that cannot be remounted...) is
skipped, reported in :attr:`SandboxInfo.degraded`, logged as a warning and repeated in
every result's ``warnings``; with no namespaces at all only the resource limits, the
timeout, the clean environment and the working directory as cwd remain.  With
``isolation="require"`` a degraded sandbox is an error (:class:`SandboxError`) instead;
``isolation="none"`` skips the namespaces on purpose.

A timeout or a crash (segfault, ``os._exit``, a limit's signal) kills that session only:
the result says so (``status`` ``"timeout"``/``"crashed"``, :attr:`ExecutionResult.restarted`)
and the next run starts a fresh session in the same working directory (files survive,
variables do not).  Other :class:`CodeInterpreter` objects are separate processes and are
not affected.
"""

from __future__ import annotations

import json
import logging
import math
import os
import resource
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from functionary.errors import FunctionaryError

__all__ = ["CodeInterpreter", "ExecutionResult", "SandboxInfo", "SandboxError", "Isolation"]

log = logging.getLogger("functionary.code_interpreter")

Isolation = Literal["auto", "require", "none"]
Status = Literal["ok", "error", "timeout", "crashed"]

_CHILD = Path(__file__).with_name("_sandbox_child.py")
_STARTUP_TIMEOUT = 30.0


class SandboxError(FunctionaryError, RuntimeError):
    """The sandbox could not be started, or not with the isolation required.

    Raised by :meth:`CodeInterpreter.run` (and :meth:`CodeInterpreter.start`) only for
    problems of the sandbox itself, never for what the executed code does.
    """


@dataclass(frozen=True)
class SandboxInfo:
    """What the running session's sandbox enforces.

    Attributes
    ----------
    enforced : tuple of str
        One line per measure in force (namespaces, mounts, rlimits, probes that failed
        as they should).
    degraded : tuple of str
        One line per measure that could not be applied, empty for a full sandbox.
    uid : int
        The uid the code runs as (as seen inside the session).
    pid : int
        Host pid of the process that runs the code.
    """

    enforced: tuple[str, ...] = ()
    degraded: tuple[str, ...] = ()
    uid: int = -1
    pid: int = -1

    @property
    def isolated(self) -> bool:
        """Whether nothing was degraded."""
        return not self.degraded


@dataclass(frozen=True)
class ExecutionResult:
    """The outcome of one :meth:`CodeInterpreter.run`.

    Attributes
    ----------
    status : {"ok", "error", "timeout", "crashed"}
        ``error``: the code raised (the session lives on); ``timeout``/``crashed``: the
        session was killed or died and its state is lost.
    stdout, stderr : str
        What the code (and the processes it started) wrote, truncated to the
        interpreter's ``max_output_chars`` each.
    value : str or None
        ``repr`` of the value of the last statement when it is an expression not
        evaluating to ``None`` (as a notebook shows it).
    error : str or None
        The traceback (``error``), or an explanation (``timeout``/``crashed``).
    error_type : str or None
        The exception class name, ``"TimeoutError"``, or ``"SessionCrashed"``.
    duration : float
        Wall-clock seconds of the run.
    restarted : bool
        ``True`` when this run ended the session (timeout/crash): the next run starts a
        fresh one.
    warnings : tuple of str
        The sandbox degradations (:attr:`SandboxInfo.degraded`), empty when fully isolated.
    """

    status: Status
    stdout: str = ""
    stderr: str = ""
    value: str | None = None
    error: str | None = None
    error_type: str | None = None
    duration: float = 0.0
    restarted: bool = False
    warnings: tuple[str, ...] = field(default=(), repr=False)

    @property
    def ok(self) -> bool:
        """Whether the code ran to completion without an exception."""
        return self.status == "ok"

    def __str__(self) -> str:
        parts = [p.rstrip("\n") for p in (self.stdout, self.stderr) if p]
        if self.value is not None:
            parts.append(self.value)
        if self.error:
            parts.append(self.error.rstrip("\n"))
        return "\n".join(parts) if parts else "(no output)"


def _default_env(workdir: str) -> dict[str, str]:
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": workdir,
        "TMPDIR": workdir,
        "LANG": "C.UTF-8",
        "PYTHONIOENCODING": "utf-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "MPLBACKEND": "Agg",
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }


class _Session:
    """One running session process (parent side)."""

    def __init__(self, interp: CodeInterpreter) -> None:
        self.interp = interp
        self.out = tempfile.TemporaryFile()
        self.err = tempfile.TemporaryFile()
        cfg = {
            "workdir": str(interp.workdir),
            "isolation": interp.isolation,
            "uid": interp.uid,
            "gid": interp.gid,
            "memory_limit": interp.memory_limit,
            "cpu_limit": interp.cpu_limit,
            "file_size_limit": interp.file_size_limit,
            "max_open_files": interp.max_open_files,
            "max_processes": interp.max_processes,
            "max_value_chars": interp.max_output_chars,
            "hide": list(interp.hide),
            "env": interp.env,
            "stdout_fd": self.out.fileno(),
            "stderr_fd": self.err.fileno(),
        }
        self.proc = subprocess.Popen(
            [interp.python, "-I", str(_CHILD), json.dumps(cfg)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.err.fileno(),
            pass_fds=(self.out.fileno(), self.err.fileno()),
            close_fds=True,
            start_new_session=True,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        )
        self._buf = b""
        self.pid = self.proc.pid
        self.info = SandboxInfo()
        self.next_id = 0
        deadline = time.monotonic() + _STARTUP_TIMEOUT
        try:
            while True:
                msg = self.read(deadline)
                if msg is None:
                    raise SandboxError(
                        f"the sandbox process exited during start-up (exit code {self.proc.poll()}): "
                        f"{self.captured(self.err, 4000).strip()}"
                    )
                kind = msg.get("type")
                if kind == "pid":
                    self.pid = int(msg["pid"])
                elif kind == "fatal":
                    raise SandboxError(f"sandbox set-up failed: {msg.get('error', '').strip()}")
                elif kind == "ready":
                    self.info = SandboxInfo(
                        tuple(msg.get("enforced", ())), tuple(msg.get("degraded", ())),
                        int(msg.get("uid", -1)), self.pid,
                    )
                    break
        except TimeoutError:
            self.kill()
            raise SandboxError(f"the sandbox did not start within {_STARTUP_TIMEOUT:.0f} s") from None
        except BaseException:
            self.kill()
            raise

    # -- I/O

    def read(self, deadline: float | None) -> dict[str, Any] | None:
        """The next protocol message; ``None`` at end of file; ``TimeoutError`` at deadline."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buf:
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([fd], [], [], timeout)
            if not ready:
                raise TimeoutError
            chunk = os.read(fd, 65536)
            if not chunk:
                return None
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return json.loads(line)

    def captured(self, fh: Any, limit: int) -> str:
        data = os.pread(fh.fileno(), limit * 4 + 4, 0)
        text = data.decode("utf-8", "replace")
        size = os.fstat(fh.fileno()).st_size
        if len(text) > limit or size > len(data):
            text = text[:limit] + f"\n... [output truncated: {size} bytes in all]"
        return text

    # -- control

    def arm_cpu_limit(self) -> None:
        """Give the next run ``cpu_limit`` more CPU seconds (best effort)."""
        limit = self.interp.cpu_limit
        if not limit or self.pid <= 0:
            return
        try:
            with open(f"/proc/{self.pid}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
            used = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            return
        soft = math.ceil(used + limit)
        try:
            hard = resource.prlimit(self.pid, resource.RLIMIT_CPU)[1]
            if os.geteuid() == 0:
                # root may raise the hard limit: SIGXCPU at soft, SIGKILL one second later.
                resource.prlimit(self.pid, resource.RLIMIT_CPU, (soft, soft + 1))
            elif hard == resource.RLIM_INFINITY or hard >= soft:
                # otherwise only the soft limit moves (the session could raise it too).
                resource.prlimit(self.pid, resource.RLIMIT_CPU, (soft, hard))
        except (OSError, ValueError):
            pass

    def kill(self) -> None:
        for pid in {self.pid, self.proc.pid}:
            if pid > 0:
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - a process that ignores SIGKILL
            log.error("sandbox process %d did not exit after SIGKILL", self.proc.pid)
        self.close_files()

    def close(self) -> None:
        try:
            if self.proc.stdin:
                self.proc.stdin.close()
            self.proc.wait(timeout=2)
        except (subprocess.TimeoutExpired, OSError):
            pass
        self.kill()

    def close_files(self) -> None:
        for fh in (self.proc.stdin, self.proc.stdout):
            try:
                if fh:
                    fh.close()
            except OSError:
                pass
        self.out.close()
        self.err.close()


def _describe_exit(msg: dict[str, Any] | None, returncode: int | None, interp: CodeInterpreter) -> str:
    sig = code = None
    if msg and msg.get("type") == "exit":
        sig, code = msg.get("signal"), msg.get("code")
    elif returncode is not None:
        sig, code = (-returncode, None) if returncode < 0 else (None, returncode)
    if sig:
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        why = {
            "SIGXCPU": f"CPU time limit of {interp.cpu_limit:g} s exceeded",
            "SIGKILL": "killed (memory exhausted, a CPU hard limit, or an explicit kill)",
            "SIGSEGV": "segmentation fault",
            "SIGABRT": "aborted",
            "SIGBUS": "bus error",
        }.get(name, "terminated by a signal")
        return f"the Python session died: {why} ({name})"
    if code == 128 + signal.SIGXCPU:
        return f"the Python session died: CPU time limit of {interp.cpu_limit:g} s exceeded (SIGXCPU)"
    if code is not None:
        return f"the Python session exited with code {code}"
    return "the Python session ended unexpectedly"


class CodeInterpreter:
    """A stateful Python session in a sandboxed process.

    Parameters
    ----------
    workdir : str or path-like, optional
        The session's private working directory, its only writable place (the reference
        Functionary's ``/mnt/data``).  Created if missing.  By default a fresh temporary
        directory, removed by :meth:`close`; a given directory is kept.  When the parent is
        root the directory is chowned to ``uid``.
    timeout : float, default 60
        Wall-clock seconds allowed per :meth:`run`.
    memory_limit : int or None, default 2 GiB
        ``RLIMIT_AS`` of the session, in bytes.
    cpu_limit : float or None, optional
        CPU seconds allowed per run (``RLIMIT_CPU``); defaults to ``timeout`` plus one
        second, so that a single-threaded loop always meets the wall-clock ``timeout``
        first (status ``"timeout"``) and the CPU limit stops code that burns several cores
        at once (status ``"crashed"``).  With equal limits the two would race.
    file_size_limit : int or None, default 256 MiB
        ``RLIMIT_FSIZE``: the largest file the code can write.
    max_open_files : int or None, default 256
        ``RLIMIT_NOFILE``.
    max_processes : int or None, default 64
        ``RLIMIT_NPROC`` for the dedicated uid (processes and threads).
    max_output_chars : int, default 20000
        Characters of stdout, stderr and the value kept in a result.
    isolation : {"auto", "require", "none"}, default "auto"
        See the module documentation.
    uid, gid : int, default 65534
        The unprivileged identity used when the parent is root.
    hide : tuple of str, default ("/run",)
        Directories covered by an empty read-only tmpfs inside the sandbox.
    env : dict, optional
        The environment of the session (replaces the default minimal one).
    python : str, optional
        The interpreter to run the session with (default: ``sys.executable``, so the
        session can import the packages of this environment).

    Notes
    -----
    Runs of one interpreter are serialised (a lock); use one interpreter per
    conversation.  The session starts on the first :meth:`run` (or :meth:`start`).
    """

    def __init__(
        self,
        *,
        workdir: str | os.PathLike[str] | None = None,
        timeout: float = 60.0,
        memory_limit: int | None = 2 * 1024**3,
        cpu_limit: float | None = None,
        file_size_limit: int | None = 256 * 1024**2,
        max_open_files: int | None = 256,
        max_processes: int | None = 64,
        max_output_chars: int = 20_000,
        isolation: Isolation = "auto",
        uid: int = 65534,
        gid: int = 65534,
        hide: tuple[str, ...] = ("/run",),
        env: dict[str, str] | None = None,
        python: str | None = None,
    ) -> None:
        if isolation not in ("auto", "require", "none"):
            raise ValueError(f"isolation must be 'auto', 'require' or 'none', not {isolation!r}")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self._own_workdir = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix="functionary-ci-") if workdir is None else workdir).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.timeout = float(timeout)
        self.memory_limit = memory_limit
        self.cpu_limit = float(cpu_limit) if cpu_limit is not None else self.timeout + 1.0
        self.file_size_limit = file_size_limit
        self.max_open_files = max_open_files
        self.max_processes = max_processes
        self.max_output_chars = int(max_output_chars)
        self.isolation: Isolation = isolation
        self.uid, self.gid = int(uid), int(gid)
        self.hide = tuple(hide)
        self.env = dict(env) if env is not None else _default_env(str(self.workdir))
        self.python = python or sys.executable
        self._session: _Session | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._finalizer = weakref.finalize(self, CodeInterpreter._cleanup, [None], None)

    # -- lifecycle

    @staticmethod
    def _cleanup(holder: list[_Session | None], workdir: Path | None) -> None:
        session = holder[0]
        if session is not None:
            session.close()
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)

    def _reset_finalizer(self) -> None:
        self._finalizer.detach()
        self._finalizer = weakref.finalize(
            self, CodeInterpreter._cleanup, [self._session], self.workdir if self._own_workdir else None
        )

    @property
    def sandbox(self) -> SandboxInfo:
        """What the current session enforces (starts the session if needed).

        Raises
        ------
        SandboxError
            When the session cannot start.
        """
        with self._lock:
            return self._ensure().info

    def start(self) -> SandboxInfo:
        """Start the session now rather than on the first run.

        Returns
        -------
        SandboxInfo

        Raises
        ------
        SandboxError
            When the sandbox cannot start, or (``isolation="require"``) is degraded.
        """
        return self.sandbox

    def _ensure(self) -> _Session:
        if self._closed:
            raise SandboxError("the code interpreter is closed")
        if self._session is None or self._session.proc.poll() is not None:
            if self._session is not None:
                self._session.kill()
            self._session = _Session(self)
            self._reset_finalizer()
            for line in self._session.info.degraded:
                log.warning("code interpreter sandbox degraded: %s", line)
        return self._session

    def restart(self) -> None:
        """Kill the session; the next run starts a fresh one (files in the working
        directory are kept)."""
        with self._lock:
            if self._session is not None:
                self._session.kill()
                self._session = None

    def close(self) -> None:
        """Stop the session and remove the working directory if it was created here.

        Idempotent.
        """
        with self._lock:
            self._closed = True
            if self._session is not None:
                self._session.close()
                self._session = None
            self._finalizer.detach()
            if self._own_workdir:
                shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> CodeInterpreter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- running code

    def run(self, code: str, *, timeout: float | None = None) -> ExecutionResult:
        """Execute ``code`` in the session.

        Parameters
        ----------
        code : str
            Python source; the value of a final expression is reported, as in a notebook.
        timeout : float, optional
            Overrides the interpreter's ``timeout`` for this run.

        Returns
        -------
        ExecutionResult
            Never an exception for what the code does (errors, timeouts, crashes).

        Raises
        ------
        SandboxError
            Only when the sandbox itself cannot start (or is degraded under
            ``isolation="require"``), or the interpreter is closed.
        """
        if not isinstance(code, str):
            raise TypeError(f"code must be a str, not {type(code).__name__}")
        limit = self.timeout if timeout is None else float(timeout)
        with self._lock:
            session = self._ensure()
            warnings = session.info.degraded
            session.arm_cpu_limit()
            session.next_id += 1
            request = json.dumps({"id": session.next_id, "code": code}) + "\n"
            start = time.monotonic()
            deadline = start + limit
            assert session.proc.stdin is not None
            try:
                session.proc.stdin.write(request.encode("utf-8", "surrogatepass"))
                session.proc.stdin.flush()
                msg = session.read(deadline)
                while msg is not None and msg.get("type") != "result":
                    if msg.get("type") == "exit":
                        break
                    msg = session.read(deadline)
            except TimeoutError:
                stdout, stderr = self._outputs(session)
                session.kill()
                self._session = None
                return ExecutionResult(
                    "timeout", stdout, stderr, None,
                    f"TimeoutError: the code ran longer than {limit:g} s; the Python session was "
                    "killed and restarted, so its variables are lost (files in the working "
                    "directory are kept).",
                    "TimeoutError", time.monotonic() - start, True, warnings,
                )
            except (BrokenPipeError, ConnectionResetError):
                msg = None
            duration = time.monotonic() - start
            if msg is None or msg.get("type") != "result":
                stdout, stderr = self._outputs(session)
                try:
                    session.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
                why = _describe_exit(msg, session.proc.poll(), self)
                session.kill()
                self._session = None
                return ExecutionResult(
                    "crashed", stdout, stderr, None,
                    f"SessionCrashed: {why}; it was restarted, so its variables are lost "
                    "(files in the working directory are kept).",
                    "SessionCrashed", duration, True, warnings,
                )
            stdout, stderr = self._outputs(session)
            return ExecutionResult(
                "ok" if msg.get("status") == "ok" else "error",
                stdout, stderr, msg.get("value"), msg.get("error"), msg.get("error_type"),
                duration, False, warnings,
            )

    def _outputs(self, session: _Session) -> tuple[str, str]:
        try:
            return (session.captured(session.out, self.max_output_chars),
                    session.captured(session.err, self.max_output_chars))
        except (OSError, ValueError):
            return "", ""
