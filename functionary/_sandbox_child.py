"""The process side of :class:`functionary.code_interpreter.CodeInterpreter`.

Run as a script (``python -I _sandbox_child.py CONFIG_JSON``), standard library only, so
that nothing from the parent's environment is imported before the sandbox is set up.

Start-up, in order (each step is reported; a step that cannot be done is a
*degradation*, listed in the ``ready`` message):

1. Keep the protocol pipes (stdin/stdout) on private descriptors; fds 1 and 2 become the
   parent-owned capture files, fd 0 ``/dev/null``.
2. ``unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID)`` (plus ``CLONE_NEWUSER`` with a
   one-uid map when not root), then ``fork``: the child is pid 1 of a new pid namespace
   (every process it starts dies with it); the first process only waits and reports how
   the child ended.
3. In the new mount namespace: propagation private; a fresh ``/proc`` for the pid
   namespace; an empty read-only tmpfs over ``/run`` (hides host unix sockets); every
   mount point remounted read-only, ``nosuid``; the working directory bind-mounted
   read-write (``nosuid,nodev``).
4. ``setrlimit``: address space, CPU seconds, file size, open files, core dumps, and (when
   a dedicated uid is used) processes.
5. Privileges dropped: as host root, ``setgroups([])``, ``setgid``/``setuid`` to the
   configured uid (``nobody``), the working directory chowned to it first; in a user
   namespace, every capability is dropped.  ``PR_SET_NO_NEW_PRIVS`` always.
6. Probes: writing a file outside the working directory and connecting to 127.0.0.1 are
   attempted; the outcome is reported as enforced or degraded.

Protocol: JSON lines.  Child → parent: ``{"type": "pid", "pid": N}`` (host pid of the
process that runs code), ``{"type": "ready", "enforced": [...], "degraded": [...]}``, one
``{"type": "result", ...}`` per request, ``{"type": "exit", ...}`` when the code-running
process ended.  Parent → child: ``{"id": N, "code": "..."}``.
"""

from __future__ import annotations

import ast
import builtins
import ctypes
import errno
import json
import linecache
import os
import resource
import signal
import socket
import sys
import threading
import time
import traceback

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24

PR_SET_PDEATHSIG = 1
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38

_OPTION_FLAGS = {
    "nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC, "noatime": MS_NOATIME,
    "nodiratime": MS_NODIRATIME, "relatime": MS_RELATIME, "strictatime": MS_STRICTATIME,
}

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]
_libc.unshare.argtypes = [ctypes.c_int]


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _check(
        _libc.mount(
            source.encode() if source is not None else None,
            target.encode(),
            fstype.encode() if fstype is not None else None,
            flags,
            data.encode() if data is not None else None,
        ),
        f"mount {target}",
    )


def _prctl(option: int, arg: int) -> int:
    return _libc.prctl(option, ctypes.c_ulong(arg), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0))


def _unescape_mount_path(path: str) -> str:
    # /proc/self/mountinfo escapes space, tab, newline and backslash as \ooo.
    out, i = [], 0
    while i < len(path):
        if path[i] == "\\" and i + 3 < len(path) + 0 and path[i + 1 : i + 4].isdigit():
            out.append(chr(int(path[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(path[i])
            i += 1
    return "".join(out)


def _mount_points() -> list[tuple[str, int]]:
    """(mount point, flags to preserve) of every mount, shortest path first."""
    points: dict[str, int] = {}
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as fh:
        for line in fh:
            fields = line.split()
            target = _unescape_mount_path(fields[4])
            flags = 0
            for opt in fields[5].split(","):
                flags |= _OPTION_FLAGS.get(opt, 0)
            points[target] = flags
    return sorted(points.items(), key=lambda kv: (kv[0].count("/"), kv[0]))


class _Report:
    def __init__(self) -> None:
        self.enforced: list[str] = []
        self.degraded: list[str] = []


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _send(fd: int, message: dict) -> None:
    _write_all(fd, (json.dumps(message) + "\n").encode("utf-8", "surrogatepass"))


# --------------------------------------------------------------------------- set-up


def _wait_watching_parent(pid: int) -> int:
    """Wait for ``pid``; kill it if this process's parent (the application) dies first.

    The code may never read the protocol pipe again (an endless loop), so the end of the
    pipe alone cannot stop the session when the application is killed.
    """
    parent = os.getppid()
    while True:
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return 0
        if done:
            return status
        if os.getppid() != parent:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.2)


def _watch_parent() -> None:
    """Without a waiting process (no pid namespace): exit when the application dies."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, daemon=True, name="functionary-watchdog").start()


def _namespaces(cfg: dict, report: _Report, proto_out: int) -> tuple[int, bool]:
    """Enter new namespaces and fork into the pid namespace.

    Returns the ``CLONE_*`` flags entered and whether a user namespace was created.
    Only the process that will run code returns.
    """
    host_root = os.geteuid() == 0
    uid, gid = os.getuid(), os.getgid()
    base = 0 if host_root else CLONE_NEWUSER
    entered = 0
    for flags in (CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID, CLONE_NEWNS | CLONE_NEWNET, CLONE_NEWNET, CLONE_NEWNS):
        try:
            _unshare(base | flags)
        except OSError:
            continue
        entered = flags
        break
    if not entered:
        report.degraded.append(
            "namespaces: unshare() was refused (no root and no unprivileged user namespaces): "
            "no network, filesystem or process isolation; only resource limits and the working "
            "directory as cwd apply"
        )
        _send(proto_out, {"type": "pid", "pid": os.getpid()})
        return 0, False
    if base:
        try:
            with open("/proc/self/setgroups", "w") as fh:
                fh.write("deny")
            with open("/proc/self/uid_map", "w") as fh:
                fh.write(f"0 {uid} 1")
            with open("/proc/self/gid_map", "w") as fh:
                fh.write(f"0 {gid} 1")
        except OSError as exc:
            report.degraded.append(f"user namespace: cannot write the uid/gid maps ({exc})")
        report.enforced.append(f"user namespace: uid 0 inside is host uid {uid}; all capabilities dropped later")
    if not entered & CLONE_NEWNET:
        report.degraded.append("network: no network namespace; the host network is reachable")
    if not entered & CLONE_NEWNS:
        report.degraded.append("filesystem: no mount namespace; writes are limited by file permissions only")
    if entered & CLONE_NEWPID:
        go_r, go_w = os.pipe()
        pid = os.fork()
        if pid:
            # The waiting process: report the worker's host pid, release it, wait for it.
            os.close(go_r)
            _send(proto_out, {"type": "pid", "pid": pid})
            os.write(go_w, b"1")
            os.close(go_w)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            status = _wait_watching_parent(pid)
            message: dict[str, object] = {"type": "exit"}
            if os.WIFSIGNALED(status):
                message["signal"] = os.WTERMSIG(status)
            else:
                message["code"] = os.waitstatus_to_exitcode(status)
            try:
                _send(proto_out, message)
            except OSError:
                pass
            os._exit(0)
        os.close(go_w)
        os.read(go_r, 1)
        os.close(go_r)
        report.enforced.append("processes: pid namespace; every process started by the code dies with the session")
    else:
        _send(proto_out, {"type": "pid", "pid": os.getpid()})
        report.degraded.append("processes: no pid namespace; child processes may outlive a killed session")
    return entered, bool(base)


def _blocked_ancestor(path: str) -> str | None:
    """The first strict ancestor of ``path`` that other users cannot traverse."""
    parts = [p for p in path.split("/") if p]
    current = ""
    for part in parts[:-1]:
        current += "/" + part
        try:
            mode = os.stat(current).st_mode
        except OSError:
            return None
        if not mode & 0o001:
            return current
    return None


def _expose(paths: list[str], report: _Report) -> None:
    """Make ``paths`` reachable by an unprivileged uid without opening their parents.

    Each directory that others cannot traverse on the way to a needed path (``/root``
    for a pyenv Python) is covered by an empty tmpfs, and only the needed paths are
    bind-mounted back at their places.  Everything else under it is hidden.
    """
    wanted: dict[str, str] = {}
    for path in paths:
        path = os.path.realpath(path)
        if os.path.isdir(path):
            blocked = _blocked_ancestor(path)
            if blocked:
                wanted[path] = blocked
    kept: dict[str, str] = {}
    for path in sorted(wanted, key=len):  # a parent's bind already brings its subtree
        if not any(path.startswith(k + "/") for k in kept):
            kept[path] = wanted[path]
    wanted = kept
    if not wanted:
        return
    covers = sorted(set(wanted.values()), key=len)
    covers = [c for c in covers if not any(c.startswith(o + "/") for o in covers if o != c)]
    fds = {p: os.open(p, os.O_PATH | os.O_DIRECTORY) for p in wanted}
    try:
        for cover in covers:
            _mount("tmpfs", cover, "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,mode=755")
        for path in sorted(fds, key=len):
            os.makedirs(path, mode=0o755, exist_ok=True)
            _mount(f"/proc/self/fd/{fds[path]}", path, None, MS_BIND | MS_REC)
    finally:
        for fd in fds.values():
            os.close(fd)
    report.enforced.append(
        "filesystem: " + ", ".join(covers) + " covered by an empty tmpfs; only "
        + ", ".join(sorted(fds)) + " bound back (so the unprivileged uid can run Python)"
    )


def _filesystem(cfg: dict, report: _Report, *, expose: bool) -> None:
    workdir = cfg["workdir"]
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    try:
        _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    except OSError as exc:
        report.degraded.append(f"/proc: cannot mount a private /proc ({exc}); host processes are visible")
    if expose:
        needed = [sys.base_prefix, sys.prefix, os.path.dirname(os.path.realpath(sys.executable)), workdir]
        try:
            _expose(needed + [p for p in sys.path if p], report)
        except OSError as exc:
            report.degraded.append(f"filesystem: cannot re-expose the Python installation ({exc})")
    for hidden in cfg.get("hide", ()):
        if os.path.isdir(hidden) and not os.path.islink(hidden) and not workdir.startswith(hidden.rstrip("/") + "/"):
            try:
                _mount("tmpfs", hidden, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY, "size=4k,mode=755")
            except OSError as exc:
                report.degraded.append(f"{hidden}: cannot hide it ({exc})")
    failed = []
    for target, keep in _mount_points():
        try:
            _mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | keep)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.EACCES) and target != "/":
                continue  # shadowed or inaccessible mount point
            failed.append(f"{target} ({os.strerror(exc.errno)})")
    if failed:
        report.degraded.append("filesystem: could not remount read-only: " + ", ".join(failed))
    _mount(workdir, workdir, None, MS_BIND | MS_REC)
    _mount(None, workdir, None, MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV)
    report.enforced.append(
        f"filesystem: every mount read-only and nosuid except the working directory {workdir}; "
        f"{', '.join(cfg.get('hide', ())) or 'nothing'} hidden by an empty read-only tmpfs"
    )


def _limits(cfg: dict, report: _Report, *, dedicated_uid: bool, parent_can_raise: bool) -> None:
    applied = []

    def set_limit(res: int, soft: int, hard: int, label: str) -> None:
        try:
            resource.setrlimit(res, (soft, hard))
            applied.append(label)
        except (ValueError, OSError) as exc:
            report.degraded.append(f"rlimit {label}: {exc}")

    inf = resource.RLIM_INFINITY
    if cfg.get("memory_limit"):
        m = int(cfg["memory_limit"])
        set_limit(resource.RLIMIT_AS, m, m, f"address space {m >> 20} MiB")
    if cfg.get("cpu_limit"):
        c = max(1, int(round(cfg["cpu_limit"])))
        # A root parent can raise the hard limit again before each run (prlimit);
        # otherwise only the soft limit can move, so the hard limit stays open.
        set_limit(resource.RLIMIT_CPU, c, c + 1 if parent_can_raise else inf, f"CPU {c} s per run")
    if cfg.get("file_size_limit"):
        f = int(cfg["file_size_limit"])
        set_limit(resource.RLIMIT_FSIZE, f, f, f"file size {f >> 20} MiB")
    if cfg.get("max_open_files"):
        n = int(cfg["max_open_files"])
        set_limit(resource.RLIMIT_NOFILE, n, n, f"{n} open files")
    set_limit(resource.RLIMIT_CORE, 0, 0, "no core dumps")
    if cfg.get("max_processes") and dedicated_uid:
        p = int(cfg["max_processes"])
        set_limit(resource.RLIMIT_NPROC, p, p, f"{p} processes/threads for uid {cfg['uid']}")
    if applied:
        report.enforced.append("rlimits: " + ", ".join(applied))


def _chown_tree(path: str, uid: int, gid: int) -> None:
    os.chown(path, uid, gid)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            try:
                os.chown(os.path.join(root, name), uid, gid, follow_symlinks=False)
            except OSError:
                pass


def _drop_capabilities() -> None:
    for cap in range(64):
        _prctl(PR_CAPBSET_DROP, cap)

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]

    header = Header(0x20080522, 0)
    data = (Data * 2)()
    _check(_libc.capset(ctypes.byref(header), ctypes.byref(data)), "capset")


def _readable_as(uid: int, gid: int, paths: list[str]) -> str | None:
    """Return the first of ``paths`` that ``uid`` cannot list, or ``None`` (checked in a
    forked probe process that switches to the uid)."""
    paths = [p for p in paths if os.path.isdir(p)]  # checked with the current privileges
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the probe process
        os.close(r)
        bad = ""
        try:
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            for path in paths:
                try:
                    os.listdir(path)
                except OSError:
                    bad = path
                    break
        except OSError as exc:
            bad = f"(setuid failed: {exc})"
        os.write(w, bad.encode("utf-8", "surrogateescape"))
        os._exit(0)
    os.close(w)
    chunks = []
    while True:
        chunk = os.read(r, 4096)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(r)
    os.waitpid(pid, 0)
    bad = b"".join(chunks).decode("utf-8", "surrogateescape")
    return bad or None


def _privileges(cfg: dict, report: _Report, in_userns: bool, use_uid: bool, unreadable: str | None) -> None:
    """Drop privileges: switch to the dedicated uid, or drop every capability."""
    host_root = os.geteuid() == 0 and not in_userns
    dedicated = False
    if host_root and use_uid:
        uid, gid = int(cfg["uid"]), int(cfg["gid"])
        try:
            _chown_tree(cfg["workdir"], uid, gid)
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            dedicated = True
            report.enforced.append(f"privileges: runs as uid {uid}/gid {gid} without capabilities")
        except OSError as exc:
            report.degraded.append(f"privileges: cannot switch to uid {uid} ({exc})")
    elif host_root:
        report.degraded.append(
            f"privileges: uid {cfg['uid']} cannot read the Python installation ({unreadable}), so the "
            "code keeps uid 0 with every capability dropped: the read-only mounts still hold, but "
            "files readable only by root are readable, and RLIMIT_NPROC does not apply to uid 0"
        )
    if not dedicated and (host_root or in_userns):
        try:
            _drop_capabilities()
            report.enforced.append(
                "privileges: every capability dropped, bounding set emptied (mounts and namespaces "
                "cannot be undone, exec cannot regain capabilities)"
            )
        except OSError as exc:
            report.degraded.append(f"privileges: cannot drop capabilities ({exc}); mounts could be undone")
    if _prctl(PR_SET_NO_NEW_PRIVS, 1) == 0:
        report.enforced.append("no_new_privs: set-uid programs cannot gain privileges")


def _probe(cfg: dict, report: _Report) -> None:
    probe = os.path.join(os.path.dirname(cfg["workdir"].rstrip("/")) or "/", f".functionary-probe-{os.getpid()}")
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        report.enforced.append(f"probe: creating {probe} failed ({errno.errorcode.get(exc.errno, exc.errno)})")
    else:
        os.close(fd)
        os.unlink(probe)
        report.degraded.append(f"probe: a file could be created outside the working directory ({probe})")
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(1.0)
    try:
        rc = s.connect_ex(("127.0.0.1", int(cfg.get("probe_port") or 9)))
    finally:
        s.close()
    if rc in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL):
        report.enforced.append(f"probe: connect to 127.0.0.1 failed ({errno.errorcode.get(rc, rc)})")
    else:
        report.degraded.append(
            f"probe: connect to 127.0.0.1 was not blocked by the network (result {errno.errorcode.get(rc, rc)})"
        )


# --------------------------------------------------------------------------- execution


class _Executor:
    def __init__(self, cfg: dict) -> None:
        self.namespace: dict = {"__name__": "__main__", "__builtins__": builtins}
        self.cell = 0
        self.max_value_chars = int(cfg.get("max_value_chars") or 10_000)

    def run(self, code: str) -> dict:
        self.cell += 1
        filename = f"<cell-{self.cell}>"
        for fd in (1, 2):
            try:
                os.ftruncate(fd, 0)
                os.lseek(fd, 0, os.SEEK_SET)
            except OSError:
                pass
        linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
        result: dict = {"status": "ok", "value": None, "error": None, "error_type": None}
        try:
            tree = ast.parse(code, filename, "exec")
            last = None
            if tree.body and isinstance(tree.body[-1], ast.Expr):
                last = ast.Expression(tree.body.pop().value)
            exec(compile(tree, filename, "exec"), self.namespace)
            if last is not None:
                value = eval(compile(last, filename, "eval"), self.namespace)
                if value is not None:
                    self.namespace["_"] = value
                    result["value"] = self._repr(value)
        except BaseException as exc:  # noqa: BLE001 - everything the user code raises is reported
            if isinstance(exc, SyntaxError):
                text = "".join(traceback.format_exception_only(type(exc), exc))
            else:
                tb = exc.__traceback__
                while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
                    tb = tb.tb_next
                text = "".join(traceback.format_exception(type(exc), exc, tb))
            result.update(status="error", error=text, error_type=type(exc).__name__)
        finally:
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except Exception:  # noqa: BLE001 - user code may have replaced the stream
                    pass
        return result

    def _repr(self, value: object) -> str:
        try:
            text = repr(value)
        except BaseException as exc:  # noqa: BLE001
            text = f"<repr failed: {type(exc).__name__}: {exc}>"
        if len(text) > self.max_value_chars:
            text = text[: self.max_value_chars] + f"... [{len(text) - self.max_value_chars} more characters]"
        return text


def main() -> None:
    cfg = json.loads(sys.argv[1])
    sys.dont_write_bytecode = True
    # 1. private protocol descriptors; fd 0/1/2 for the user code.
    proto_in = os.dup(0)
    proto_out = os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(int(cfg["stdout_fd"]), 1)
    os.dup2(int(cfg["stderr_fd"]), 2)
    for fd in {int(cfg["stdout_fd"]), int(cfg["stderr_fd"])} - {0, 1, 2}:
        os.close(fd)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an oversize write fails instead of killing
    # As pid 1 of a pid namespace the process would ignore SIGXCPU's default action, so
    # end the session explicitly (the hard limit's SIGKILL, one second later, is forced).
    signal.signal(signal.SIGXCPU, lambda *_: os._exit(128 + signal.SIGXCPU))
    report = _Report()
    isolate = cfg["isolation"] != "none"
    try:
        entered, in_userns = 0, False
        if isolate:
            entered, in_userns = _namespaces(cfg, report, proto_out)
            if entered & CLONE_NEWNS:
                try:
                    _filesystem(cfg, report, expose=os.geteuid() == 0 and not in_userns)
                except OSError as exc:
                    report.degraded.append(f"filesystem: set-up failed ({exc}); writes limited by permissions only")
        else:
            _send(proto_out, {"type": "pid", "pid": os.getpid()})
            report.degraded.append("isolation disabled (isolation='none'): resource limits and cwd only")
        host_root = isolate and os.geteuid() == 0 and not in_userns
        unreadable = None
        if host_root:
            unreadable = _readable_as(int(cfg["uid"]), int(cfg["gid"]), [p for p in sys.path if p])
        use_uid = host_root and unreadable is None
        _limits(cfg, report, dedicated_uid=use_uid, parent_can_raise=host_root)
        if isolate:
            _privileges(cfg, report, in_userns, use_uid, unreadable)
            _probe(cfg, report)
        if entered & CLONE_NEWPID:
            # The parent is the single-threaded waiting process: die with it.  (Not set
            # otherwise: the parent would be a thread of the application, and the signal
            # fires when that *thread* exits.)
            _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        else:
            _watch_parent()
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises SandboxError
        _send(proto_out, {"type": "fatal", "error": "".join(traceback.format_exception(exc))})
        os._exit(70)
    if cfg["isolation"] == "require" and report.degraded:
        _send(proto_out, {"type": "fatal", "error": "sandbox degraded: " + "; ".join(report.degraded)})
        os._exit(71)
    os.chdir(cfg["workdir"])
    os.environ.clear()
    os.environ.update(cfg.get("env") or {})
    sys.path.insert(0, cfg["workdir"])
    sys.argv = [""]
    sys.stdin = open(0, "r", closefd=False)
    sys.stdout = open(1, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False)
    sys.stderr = open(2, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False)
    _send(proto_out, {"type": "ready", "enforced": report.enforced, "degraded": report.degraded,
                      "uid": os.getuid(), "pid_in_namespace": os.getpid()})
    executor = _Executor(cfg)
    reader = os.fdopen(proto_in, "rb")
    while True:
        line = reader.readline()
        if not line:
            os._exit(0)
        request = json.loads(line)
        result = executor.run(request["code"])
        result["type"] = "result"
        result["id"] = request.get("id")
        _send(proto_out, result)


if __name__ == "__main__":
    main()
