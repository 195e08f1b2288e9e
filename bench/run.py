"""voice2fa benchmarks: each figure and its baseline measured in the same run, several times.

    python bench/run.py                 # the full run (a few minutes)
    python bench/run.py --quick         # fewer repetitions, shorter loads
    python bench/run.py --only status,cxml
    python bench/run.py --tool python   # force the Python load generator even if wrk exists
    python bench/run.py --profile       # afterwards, profile the two webhook routes (cProfile)
    python bench/run.py --only webhook --before /tmp/old   # also the routes of another source tree
                                        #   (a checkout of an earlier commit), interleaved in the same rounds

Figures (names for --only): version, verify (start-up, "startup" for both), status, cxml
("webhook" for both), sandbox (wall time and peak RSS; "rss" is an alias).
Prints a Markdown table of medians and ratios. Timings are for reading by people, never a
pass/fail gate in the tests. Only 127.0.0.1 is used; every loop is bounded in time and count.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import select
import shutil
import signal
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
HOST = "127.0.0.1"
NUMBER = "+15551234567"
SIGNING_KEY = "bench-signing-key"
CONNECTIONS = 32
PROC_TIMEOUT = 60.0  # any one child process
FIGURES = ("version", "verify", "status", "cxml", "sandbox")
ALIASES = {"startup": ("version", "verify"), "webhook": ("status", "cxml"), "rss": ("sandbox",)}


@dataclass
class Settings:
    startup_runs: int
    sandbox_runs: int
    rounds: int
    duration: int
    warmup: int


FULL = Settings(startup_runs=21, sandbox_runs=7, rounds=5, duration=4, warmup=1)
QUICK = Settings(startup_runs=7, sandbox_runs=3, rounds=1, duration=3, warmup=1)


@dataclass
class Row:
    figure: str
    subject: str
    baseline: str
    result: str
    target: str
    met: str  # "yes" / "**no**" / "—" / "invalid"


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


# --- small helpers -----------------------------------------------------------------------


def med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def spread(xs: list[float], fmt: str) -> str:
    return f"{fmt.format(med(xs))} ({fmt.format(min(xs))}–{fmt.format(max(xs))})" if xs else "n/a"


def verdict(ok: bool) -> str:
    return "yes" if ok else "**no**"


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def cpu_pinning(enabled: bool) -> tuple[set[int] | None, set[int] | None]:
    """(server CPUs, load CPUs): on a machine with 2+ CPUs the server gets one, the load
    generator another, so the two never share a core (through taskset, when installed)."""
    if not enabled or not hasattr(os, "sched_getaffinity") or shutil.which("taskset") is None:
        return None, None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None
    return {cpus[-1]}, set(cpus[:-1])


def pinned(cpus: set[int] | None, argv: list[str]) -> list[str]:
    """argv run on the given CPUs (taskset), or as is."""
    if cpus is None:
        return argv
    return ["taskset", "-c", ",".join(str(c) for c in sorted(cpus)), *argv]


_WORK: tempfile.TemporaryDirectory | None = None


def workdir(prefix: str) -> str:
    """A fresh directory under this run's temporary root (removed at exit)."""
    global _WORK
    if _WORK is None:
        _WORK = tempfile.TemporaryDirectory(prefix="v2fa-bench-")
    return tempfile.mkdtemp(prefix=prefix, dir=_WORK.name)


_PYCACHE: str | None = None


def clean_env(**extra: str) -> dict[str, str]:
    """The environment for every child: no SIGNALWIRE_* / VOICE2FA_* the caller happened to
    set, and byte-code caching on, into a private PYTHONPYCACHEPREFIX (so nothing is written
    into the source tree, and a PYTHONDONTWRITEBYTECODE=1 in the caller's environment does not
    make every run recompile the editable package from source, which installed users never pay)."""
    global _PYCACHE
    if _PYCACHE is None:
        _PYCACHE = workdir("pycache-")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SIGNALWIRE_", "VOICE2FA_")) and k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = _PYCACHE
    env.update(extra)
    return env


@dataclass
class Result:
    wall: float
    rc: int
    maxrss_kib: int
    out: str
    err: str


def run_proc(argv: list[str], env: dict[str, str], cwd: str, timeout: float = PROC_TIMEOUT) -> Result:
    """Run one child; wall time with perf_counter; peak RSS from os.wait4's rusage (KiB)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        killer = threading.Timer(timeout, proc.kill)
        killer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            killer.cancel()
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        out.seek(0)
        err.seek(0)
        return Result(wall, proc.returncode, usage.ru_maxrss, out.read().decode(errors="replace"),
                      err.read().decode(errors="replace"))


def is_python_script(path: str) -> bool:
    try:
        with open(path, "rb") as fh:
            first = fh.readline(200)
    except OSError:
        return False
    return first.startswith(b"#!") and b"python" in first


def resolve_console_script(report: Report) -> tuple[str | None, str | None]:
    """(the console script to time, the PATH entry when that is a different thing, e.g. a
    pyenv shim that execs the real script after a bash start-up of its own)."""
    on_path = shutil.which("voice2fa")
    if on_path is None:
        report.problems.append("`voice2fa` is not on PATH (is the package installed?)")
        return None, None
    if is_python_script(on_path):
        report.notes.append(f"`voice2fa` is the console script on PATH: `{on_path}`")
        return on_path, None
    beside = Path(sysconfig.get_path("scripts")) / "voice2fa"
    if beside.exists() and is_python_script(str(beside)):
        report.notes.append(
            f"`voice2fa` on PATH is `{on_path}`, not a Python console script (a pyenv shim or similar); "
            f"the figures time the console script it dispatches to, `{beside}`, and the shim is shown "
            f"as an extra row for information"
        )
        return str(beside), on_path
    report.notes.append(f"`voice2fa` on PATH is `{on_path}` (not a Python script); timed as is")
    return on_path, None


# --- start-up ----------------------------------------------------------------------------


def bench_startup(report: Report, s: Settings, want: set[str]) -> None:
    script, shim = resolve_console_script(report)
    if script is None:
        return
    py = sys.executable
    cwd = workdir("cwd-")  # no .env here
    state = workdir("state-")  # empty: verify finds no session
    env = clean_env(VOICE2FA_STATE_DIR=state)
    cmds: dict[str, list[str]] = {"baseline": [py, "-c", "import click"]}
    if "version" in want:
        cmds["version"] = [script, "--version"]
        if shim:
            cmds["shim"] = [shim, "--version"]
    if "verify" in want:
        cmds["verify"] = [script, "verify", NUMBER, "--code", "000000"]

    def valid(name: str, r: Result) -> str | None:
        if name == "baseline" and r.rc != 0:
            return f"baseline exited {r.rc}: {r.err.strip()[-200:]}"
        if name in ("version", "shim") and (r.rc != 0 or not r.out.startswith("voice2fa ")):
            return f"`voice2fa --version` exited {r.rc}, stdout {r.out.strip()!r}"
        if name == "verify" and (r.rc != 1 or "no open session" not in r.err):
            return f"`verify` exited {r.rc} (want 1, 'no open session'): {r.err.strip()[-200:]!r}"
        return None

    times: dict[str, list[float]] = {k: [] for k in cmds}
    rss: dict[str, list[int]] = {k: [] for k in cmds}
    bad: dict[str, str] = {}
    log(f"start-up: {s.startup_runs} interleaved runs of {', '.join(cmds)} (+2 warm-up each)")
    for i in range(s.startup_runs + 2):
        for name, argv in cmds.items():
            r = run_proc(argv, env, cwd)
            problem = valid(name, r)
            if problem:
                bad.setdefault(name, problem)
            if i >= 2:  # the first two rounds warm the page cache and write .pyc files
                times[name].append(r.wall)
                rss[name].append(r.maxrss_kib)
    if any(Path(state).iterdir()):
        report.problems.append(f"verify wrote into the empty state dir {state}: the figure is not the no-session path")
    for name, problem in bad.items():
        report.problems.append(problem)

    base = med(times["baseline"])
    base_s = spread([t * 1000 for t in times["baseline"]], "{:.1f}") + " ms"
    rows = [("version", "`voice2fa --version` start-up (wall)"),
            ("verify", f"`voice2fa verify {NUMBER} --code 000000`, no session (wall)")]
    for name, label in rows:
        if name not in cmds:
            continue
        ratio = med(times[name]) / base
        report.rows.append(Row(label, spread([t * 1000 for t in times[name]], "{:.1f}") + " ms", base_s,
                               f"{ratio:.2f}×", "≤ 1.5×", "invalid" if name in bad else verdict(ratio <= 1.5)))
    if "shim" in cmds:
        ratio = med(times["shim"]) / base
        report.rows.append(Row(f"(info) `voice2fa --version` through the PATH shim `{shim}`",
                               spread([t * 1000 for t in times["shim"]], "{:.1f}") + " ms", base_s,
                               f"{ratio:.2f}×", "—", "—"))
    report.notes.append(
        f"start-up: {s.startup_runs} runs per command, interleaved, after 2 warm-up rounds; baseline "
        f"`{py} -c \"import click\"`; peak RSS medians: "
        + ", ".join(f"{k} {med(v) / 1024:.1f} MiB" for k, v in rss.items())
    )


# --- sandbox round trip ------------------------------------------------------------------


def bench_sandbox(report: Report, s: Settings) -> None:
    script, _ = resolve_console_script(Report())  # notes already made by the start-up part, if run
    if script is None:
        report.problems.append("sandbox: `voice2fa` not found")
        return
    cwd = workdir("cwd-")
    walls: list[float] = []
    peaks: list[int] = []
    bad = None
    log(f"sandbox: {s.sandbox_runs} runs of `voice2fa send --sandbox {NUMBER} --no-prompt` (+1 warm-up)")
    for i in range(s.sandbox_runs + 1):
        state = workdir("state-")  # fresh: includes creating the store
        r = run_proc([script, "send", "--sandbox", NUMBER, "--no-prompt"], clean_env(VOICE2FA_STATE_DIR=state), cwd)
        shutil.rmtree(state, ignore_errors=True)
        if r.rc != 0:
            bad = bad or f"sandbox send exited {r.rc}: {r.err.strip()[-300:]!r}"
        if i >= 1:
            walls.append(r.wall)
            peaks.append(r.maxrss_kib)
    if bad:
        report.problems.append(bad)
    wall = med(walls)
    peak_mb = max(peaks) * 1024 / 1e6
    report.rows.append(Row(f"`voice2fa send --sandbox {NUMBER} --no-prompt` (wall)",
                           spread(walls, "{:.3f}") + " s", "—", f"{wall:.3f} s", "≤ 1.0 s",
                           "invalid" if bad else verdict(wall <= 1.0)))
    report.rows.append(Row("peak RSS of that process (max over runs)",
                           f"{peak_mb:.1f} MB (median {med(peaks) * 1024 / 1e6:.1f})", "—", f"{peak_mb:.1f} MB",
                           "≤ 60 MB", "invalid" if bad else verdict(peak_mb <= 60)))
    report.notes.append(f"sandbox: {s.sandbox_runs} runs after 1 warm-up, each with a fresh empty "
                        f"VOICE2FA_STATE_DIR; RSS from os.wait4 (ru_maxrss KiB; MB = 10^6 bytes)")


# --- webhook load ------------------------------------------------------------------------

CXML_FORM = [
    ("AccountSid", "bench-project"), ("ApiVersion", "2010-04-01"), ("CallSid", "{sid}"),
    ("CallStatus", "in-progress"), ("Direction", "outbound-api"), ("From", "+15550100000"), ("To", NUMBER),
]
STATUS_FORM = [
    ("AccountSid", "bench-project"), ("CallSid", "{sid}"), ("CallStatus", "ringing"),
    ("Direction", "outbound-api"), ("From", "+15550100000"), ("To", NUMBER), ("SequenceNumber", "1"),
    ("Timestamp", "Fri, 28 Nov 2025 06:00:00 GMT"), ("CallbackSource", "call-progress-events"),
]

WRK_LUA = """
wrk.method = "POST"
wrk.body = [==[{body}]==]
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["X-SignalWire-Signature"] = [==[{sig}]==]

local threads = {{}}
function setup(thread) table.insert(threads, thread) end
function init(args) non200 = 0; codes = "" end
function response(status, headers, body)
  if status ~= 200 then
    non200 = non200 + 1
    local tag = status .. ","
    if #codes < 200 and not string.find(codes, tag, 1, true) then codes = codes .. tag end
  end
end
function done(summary, latency, requests)
  local n, c = 0, ""
  for _, t in ipairs(threads) do n = n + t:get("non200"); c = c .. t:get("codes") end
  local e = summary.errors
  io.write(string.format("BENCH requests=%d duration_us=%d non200=%d connect=%d read=%d write=%d timeout=%d codes=%s\\n",
    summary.requests, summary.duration, n, e.connect, e.read, e.write, e.timeout, c))
end
"""


class ServerProc:
    def __init__(self, args: list[str], cpus: set[int] | None, profile: str | None = None,
                 code: str | None = None) -> None:
        """`code`: a source tree whose voice2fa_cli is served instead of the installed one."""
        argv = [sys.executable, str(BENCH / "serve.py"), "--signing-key", SIGNING_KEY, *args]
        if profile:
            argv += ["--profile", profile]
        env = clean_env(PYTHONPATH=code) if code else clean_env()
        self.proc = subprocess.Popen(pinned(cpus, argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL, env=env)
        ready, _, _ = select.select([self.proc.stdout], [], [], 20)
        line = self.proc.stdout.readline() if ready else b""
        if not line:
            self.stop()
            raise RuntimeError(f"serve.py {' '.join(args)} did not start: {self.proc.stderr.read().decode()[-500:]}")
        self.info = json.loads(line)
        self.port = self.info["port"]
        if code and not self.info.get("code", "").startswith(str(Path(code).resolve())):
            self.stop()
            raise RuntimeError(f"serve.py did not load voice2fa_cli from {code}: {self.info.get('code')}")

    def url(self, tail: str) -> str:
        return f"http://{HOST}:{self.port}/v/{self.info['token']}{tail}"

    def cpu_seconds(self) -> float | None:
        """CPU time (user + system) the server process has used so far (Linux /proc), or None.
        Per request, it hardly depends on what else runs on a shared machine, unlike req/s."""
        try:
            with open(f"/proc/{self.proc.pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def signed_form(server: ServerProc, tail: str, form: list[tuple[str, str]]) -> tuple[str, str, str]:
    from voice2fa_cli.signalwire import signature

    url = server.url(tail)  # = public_url (http://127.0.0.1:PORT) + path: the URL the app checks
    fields = [(k, v.format(sid=server.info["call_sid"])) for k, v in form]
    return url, urllib.parse.urlencode(fields), signature.compute(SIGNING_KEY, url, fields)


def post_once(url: str, body: str, sig: str) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body.encode(), method="POST", headers={
        "Content-Type": "application/x-www-form-urlencoded", "X-SignalWire-Signature": sig})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@dataclass
class Load:
    rps: float
    requests: int
    bad: int  # non-200 responses + socket errors
    detail: str


def load_wrk(url: str, body: str, sig: str, seconds: int, cpus: set[int] | None) -> Load:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(WRK_LUA.format(body=body, sig=sig))
        lua = fh.name
    try:
        argv = ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "-s", lua, url]
        proc = subprocess.run(pinned(cpus, argv), check=False, capture_output=True, text=True, timeout=seconds + 60)
    finally:
        os.unlink(lua)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stdout[-500:]} {proc.stderr[-500:]}")
    kv = dict(part.split("=", 1) for part in line.split()[1:] if "=" in part)
    errors = sum(int(kv[k]) for k in ("connect", "read", "write", "timeout"))
    requests = int(kv["requests"])
    rps = requests / (int(kv["duration_us"]) / 1e6)
    detail = f"non-200 {kv['non200']} ({kv.get('codes', '').strip(',') or '-'}), socket errors {errors}"
    return Load(rps, requests, int(kv["non200"]) + errors, detail)


def load_python(url: str, body: str, sig: str, seconds: int, cpus: set[int] | None) -> Load:
    argv = [sys.executable, str(BENCH / "load.py"), url, "--body", body, "--signature", sig,
            "--connections", str(CONNECTIONS), "--duration", str(seconds)]
    proc = subprocess.run(pinned(cpus, argv), check=False, capture_output=True, text=True, timeout=seconds + 60,
                          env=clean_env())
    if proc.returncode != 0:
        raise RuntimeError(f"load.py failed ({proc.returncode}): {proc.stderr[-500:]}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    non200 = sum(v for k, v in res["statuses"].items() if k != "200")
    errors = sum(res["errors"].values())
    detail = f"statuses {res['statuses']}, errors {res['errors'] or 0}"
    return Load(res["rps"], res["requests"], non200 + errors, detail)


def bench_webhook(report: Report, s: Settings, want: set[str], tool: str, pin: bool,
                  before: str | None = None) -> None:
    server_cpus, load_cpus = cpu_pinning(pin)
    load = load_wrk if tool == "wrk" else load_python
    routes = [r for r in ("status", "cxml") if r in want]
    bare = real = old = None
    try:
        bare = ServerProc(["--bare"], server_cpus)
        real = ServerProc([], server_cpus)  # gate key "7": the first document is the key-press gate
        targets = {"bare": signed_form(bare, "/status", STATUS_FORM)}
        serving = {"bare": bare}
        if "status" in routes:
            targets["status"], serving["status"] = signed_form(real, "/status", STATUS_FORM), real
        if "cxml" in routes:
            targets["cxml"], serving["cxml"] = signed_form(real, "", CXML_FORM), real
        if before:
            old = ServerProc([], server_cpus, code=before)
            if "status" in routes:
                targets["status-before"], serving["status-before"] = signed_form(old, "/status", STATUS_FORM), old
            if "cxml" in routes:
                targets["cxml-before"], serving["cxml-before"] = signed_form(old, "", CXML_FORM), old

        def sanity(name: str) -> str | None:
            status, body = post_once(*targets[name])
            if status != 200:
                return f"{name}: a single POST answered {status}: {body[:200]!r}"
            if name.startswith("cxml") and b"<Gather" not in body:
                return f"cxml: the first document is not the key-press gate: {body[:200]!r}"
            return None

        for name in targets:
            if problem := sanity(name):
                report.problems.append(problem)
                return
        samples: dict[str, list[Load]] = {name: [] for name in targets}
        cpu_us: dict[str, list[float]] = {name: [] for name in targets}  # server CPU µs per request
        log(f"webhook: {tool}, {CONNECTIONS} connections, {s.rounds} round(s) of {s.duration}s per target "
            f"({', '.join(targets)}), after a {s.warmup}s warm-up each")
        for target in targets.values():
            load(*target, s.warmup, load_cpus)
        for rnd in range(s.rounds):
            for name, target in targets.items():  # adjacent in time: one paired sample per round
                cpu0 = serving[name].cpu_seconds()
                res = load(*target, s.duration, load_cpus)
                cpu1 = serving[name].cpu_seconds()
                samples[name].append(res)
                if cpu0 is not None and cpu1 is not None and res.requests:
                    cpu_us[name].append((cpu1 - cpu0) * 1e6 / res.requests)
                log(f"  round {rnd + 1} {name}: {res.rps:,.0f} req/s, {res.requests} requests, {res.detail}"
                    + (f", server CPU {cpu_us[name][-1]:.0f} µs/request" if cpu_us[name] else ""))
        for name in targets:  # still live after the load: no 410s slipped in
            if problem := sanity(name):
                report.problems.append(problem + " (after the load)")
    finally:
        for server in (bare, real, old):
            if server is not None:
                server.stop()

    def rps_list(name: str) -> list[float]:
        return [x.rps for x in samples[name]]

    base = med(rps_list("bare"))
    base_s = spread(rps_list("bare"), "{:,.0f}") + " req/s"
    labels = {"status": "webhook status route (`POST /v/{token}/status`, signed, CallStatus=ringing)",
              "cxml": "cXML route (`POST /v/{token}`, signed, first document = key-press gate)"}
    paired = {name: [s_.rps / b.rps for s_, b in zip(samples[name], samples["bare"])] for name in routes}
    for name in routes + [f"{r}-before" for r in routes if before]:
        ratio = med(rps_list(name)) / base
        bad = sum(x.bad for x in samples[name])
        label = labels[name] if name in labels else f"{labels[name.removesuffix('-before')]}, **before** (`{before}`)"
        report.rows.append(Row(label, spread(rps_list(name), "{:,.0f}") + " req/s", base_s, f"{ratio:.2f}×",
                               "≥ 0.5×", "invalid" if bad else verdict(ratio >= 0.5)))
    if all(len(cpu_us[name]) == s.rounds for name in targets):
        for name in [n for n in targets if n != "bare"]:
            label = name.replace("-before", ", before")
            report.rows.append(Row(f"server CPU per request: {label}", spread(cpu_us[name], "{:.0f}") + " µs",
                                   spread(cpu_us["bare"], "{:.0f}") + " µs (bare)",
                                   f"{med(cpu_us['bare']) / med(cpu_us[name]):.2f}× (bare/route)", "—", "—"))
    if before:
        for name in routes:
            pairs = [a.rps / b.rps for a, b in zip(samples[name], samples[f"{name}-before"])]
            report.rows.append(Row(f"{name} route, this code / before (req/s)", "—", "—",
                                   f"{med(rps_list(name)) / med(rps_list(name + '-before')):.2f}×", "≈ 1×", "—"))
            report.notes.append(f"{name}: per-round paired req/s ratios this code / before (noise check): "
                                + ", ".join(f"{r:.2f}" for r in pairs))
            if cpu_us[name] and cpu_us[f"{name}-before"]:
                ratio = med(cpu_us[name]) / med(cpu_us[f"{name}-before"])
                report.rows.append(Row(f"{name} route, server CPU per request, this code / before", "—", "—",
                                       f"{ratio:.2f}×", "≈ 1×", "—"))
    for name in targets:
        bad = sum(x.bad for x in samples[name])
        if bad:
            report.problems.append(f"{name}: {bad} non-200 responses or socket errors: "
                                   + "; ".join(x.detail for x in samples[name]))
    tool_text = (f"wrk (`wrk -t1 -c{CONNECTIONS} -d{s.duration}s -s <signed POST>.lua`)" if tool == "wrk" else
                 f"the Python fallback bench/load.py ({CONNECTIONS} aiohttp workers, {s.duration}s): slower than "
                 f"wrk, it can be the bottleneck and pull ratios towards 1")
    order = "/".join(targets)
    report.notes.append(f"load tool: {tool_text}; {s.rounds} round(s) per target, interleaved {order}; "
                        "result = ratio of the medians; per-round paired ratios (noise check): "
                        + "; ".join(f"{n} " + ", ".join(f"{r:.2f}" for r in paired[n]) for n in routes))
    report.notes.append(
        "webhook: server = bench/serve.py in its own process (voice.webhook.make_app + web.server.Server, no access log), "
        "public_url http://127.0.0.1:PORT so the signed URL has a non-default port: one HMAC per request "
        "(an https URL without a port is checked twice, with and without :443); baseline = a bare aiohttp "
        "handler that awaits request.post() and returns 200, served the same way; "
        + (f"server pinned to CPU {sorted(server_cpus)}, load generator to CPU {sorted(load_cpus)}; "
           if server_cpus else "no CPU pinning; ")
        + "every response checked (non-200s and socket errors make the figure invalid)"
    )


def profile_webhook(s: Settings, tool: str, pin: bool) -> None:
    """Load each real route under cProfile in the server and print the hot spots."""
    import pstats

    server_cpus, load_cpus = cpu_pinning(pin)
    load = load_wrk if tool == "wrk" else load_python
    for name, tail, form in (("status", "/status", STATUS_FORM), ("cxml", "", CXML_FORM)):
        with tempfile.NamedTemporaryFile(suffix=".pstats", delete=False) as fh:
            path = fh.name
        server = ServerProc([], server_cpus, profile=path)
        try:
            res = load(*signed_form(server, tail, form), max(3, s.duration), load_cpus)
        finally:
            server.stop()
        print(f"\n### cProfile of the {name} route under load ({res.rps:,.0f} req/s with the profiler on)\n")
        print("```")
        stats = pstats.Stats(path, stream=sys.stdout)
        stats.strip_dirs().sort_stats("tottime").print_stats(20)
        stats.sort_stats("cumulative").print_stats(r"^(webhook|call|server|forms|signature|speech|phrases)\.py", 15)
        print("```")
        os.unlink(path)


# --- main --------------------------------------------------------------------------------


def machine() -> str:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import aiohttp

        aio = aiohttp.__version__
    except ImportError:
        aio = "missing"
    return (f"{os.cpu_count()} CPUs ({model}), Linux {platform.release()}, Python {platform.python_version()} "
            f"({sys.executable}), aiohttp {aio}")


def revision() -> str:
    """The commit measured (code changes under a bench: name what was measured)."""
    root = BENCH.parent
    try:
        head = subprocess.run(["git", "-C", str(root), "log", "-1", "--format=%h %s"], check=False, capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no",
                                "--", "voice2fa_cli"], check=False, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (no git)"
    if not head:
        return "unknown (no git)"
    if len(head) > 72:
        head = head[:71] + "…"
    return f"`{head}`" + (" + uncommitted changes in voice2fa_cli/" if dirty else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions and shorter loads")
    parser.add_argument("--only", metavar="NAME[,NAME]", help=f"figures: {', '.join(FIGURES)}, "
                        f"or {', '.join(ALIASES)}")
    parser.add_argument("--tool", choices=("auto", "wrk", "python"), default="auto", help="the load generator")
    parser.add_argument("--no-pin", action="store_true", help="do not pin the server and load generator to CPUs")
    parser.add_argument("--profile", action="store_true", help="then profile the webhook routes with cProfile")
    parser.add_argument("--before", metavar="DIR", help="a source tree (e.g. `git archive` of an earlier commit) "
                        "whose webhook routes are measured too, interleaved in the same rounds")
    parser.add_argument("--rounds", type=int, help="rounds per webhook target (default 5; 1 with --quick)")
    args = parser.parse_args()

    want: set[str] = set()
    for name in (args.only.split(",") if args.only else FIGURES):
        name = name.strip()
        if name in ALIASES:
            want.update(ALIASES[name])
        elif name in FIGURES:
            want.add(name)
        else:
            parser.error(f"unknown figure {name!r}: choose from {', '.join(FIGURES + tuple(ALIASES))}")
    tool = args.tool
    if tool == "auto":
        tool = "wrk" if shutil.which("wrk") else "python"
    elif tool == "wrk" and not shutil.which("wrk"):
        parser.error("wrk is not installed")
    settings = QUICK if args.quick else FULL
    if args.rounds is not None:
        if not 1 <= args.rounds <= 20:
            parser.error("--rounds must be 1..20")
        settings = Settings(**{**settings.__dict__, "rounds": args.rounds})
    if args.before and not any((Path(args.before) / "voice2fa_cli" / tail).is_file()
                               for tail in ("voice/webhook.py", "webhook.py")):
        parser.error(f"--before {args.before}: no voice2fa_cli/voice/webhook.py (or webhook.py) there")

    report = Report()
    started = time.perf_counter()
    load_before = os.getloadavg()
    if want & {"version", "verify"}:
        bench_startup(report, settings, want)
    if want & {"status", "cxml"}:
        bench_webhook(report, settings, want, tool, not args.no_pin, args.before)
    if "sandbox" in want:
        bench_sandbox(report, settings)

    print(f"## voice2fa benchmarks{' (--quick)' if args.quick else ''}\n")
    print(f"Machine: {machine()}  ")
    print(f"Code: {revision()}  ")
    print(f"Command: `python bench/run.py{' ' + ' '.join(sys.argv[1:]) if sys.argv[1:] else ''}`; "
          f"took {time.perf_counter() - started:.0f} s\n")
    print("| figure | subject, median (min–max) | baseline, median (min–max) | result | target | met |")
    print("|---|---|---|---|---|---|")
    for r in report.rows:
        print(f"| {r.figure} | {r.subject} | {r.baseline} | {r.result} | {r.target} | {r.met} |")
    print()
    load_after = os.getloadavg()
    report.notes.append(f"load average (1 min) {load_before[0]:.2f} before, {load_after[0]:.2f} after, on "
                        f"{os.cpu_count()} CPUs (the bench itself adds up to ~2 while loading)"
                        + (": other processes were busy before it started, figures are noisy; rerun on an idle "
                           "machine before trusting a close call" if load_before[0] > 1.0 else ""))
    report.notes.append("child processes run with byte-code caching into a private PYTHONPYCACHEPREFIX "
                        "(PYTHONDONTWRITEBYTECODE removed), a clean cwd, and no SIGNALWIRE_*/VOICE2FA_* "
                        "variables but the state dir")
    for note in report.notes:
        print(f"- {note}")
    if report.problems:
        print("\n**Invalid measurements:**\n")
        for p in report.problems:
            print(f"- {p}")
    if args.profile and want & {"status", "cxml"}:
        profile_webhook(settings, tool, not args.no_pin)
    if _WORK is not None:
        _WORK.cleanup()
    sys.exit(1 if report.problems else 0)


if __name__ == "__main__":
    main()
