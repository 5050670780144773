"""Scenario 6, security checks: loopback listeners, no unpickling, no leaked secrets, SASL on the broker.

1. Every listener of every process the stack starts (broker, features worker, learner, aggregator,
   archiver, serving, console, and their children) binds 127.0.0.1, read from ``/proc/net/tcp*``
   through each process's socket inodes.
2. No code path can unpickle a topic payload: an AST scan of the packages for pickle, marshal,
   shelve and their kin, unsafe YAML loads and ``eval``/``exec``, and for Faust serializers other
   than raw bytes and JSON (``scan_unsafe_deserialization``).
3. Secrets never leave: the console token, the SASL password and the PostgreSQL DSN are set to
   random values; the workers' logs, every ``--help``, the errors of bad settings and of a refused
   SASL login, and every ``/metrics`` and ``/health`` body are scanned for them.
4. SASL against Tansu with ``--authentication``: a client with a wrong password, and one without
   SASL, must be refused, and one with the right password accepted. Tansu 0.6.0's memory store
   keeps no SCRAM credential (and its build has no PLAIN), so no user can exist and no password
   can work (docs/chaos.md): the figures say so, and the scenario is not ok.
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
import re
import secrets
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from infra.chaos.stack import ChaosStack, chaos_stack, http_json, wait_until
from infra.kafka.broker import HOST, free_port, resolve_binary, stop_pid
from infra.kafka.config import producer_config
from infra.kafka.topics import EVENTS
from streams.producer import EventPublisher

SCENARIO = "security"
PACKAGES = ("streams", "experiments", "feature_store", "infra")
UNSAFE_MODULES = {"pickle", "cPickle", "_pickle", "marshal", "shelve", "dill", "cloudpickle", "joblib", "jsonpickle"}
SAFE_SERIALIZERS = {"raw", "json"}
LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}


# 2. The code: nothing that can unpickle.


def scan_unsafe_deserialization(root: Path, packages: Iterable[str] = PACKAGES) -> list[str]:
    """Every place in ``packages`` under ``root`` that imports a pickle-like module, loads YAML
    unsafely, evaluates text, or names a Faust serializer other than raw and JSON: ``path:line: why``."""
    found = []
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            found += [f"{path.relative_to(root)}:{line}: {why}" for line, why in _unsafe_nodes(tree)]
    return found


def _unsafe_nodes(tree: ast.AST) -> Iterable[tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in UNSAFE_MODULES:
                    yield node.lineno, f"imports {alias.name}"
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in UNSAFE_MODULES:
            yield node.lineno, f"imports from {node.module}"
        elif isinstance(node, ast.Call):
            name = _called(node.func)
            if name in ("eval", "exec"):
                yield node.lineno, f"calls {name}"
            elif name in ("yaml.unsafe_load", "yaml.full_load") or (
                    name == "yaml.load" and not any(k.arg == "Loader" and "Safe" in ast.unparse(k.value)
                                                    for k in node.keywords)):
                yield node.lineno, f"calls {name} without a safe loader"
            for keyword in node.keywords:
                if (keyword.arg in ("value_serializer", "key_serializer") and isinstance(keyword.value, ast.Constant)
                        and keyword.value.value not in SAFE_SERIALIZERS):
                    yield node.lineno, f"{keyword.arg}={keyword.value.value!r}"


def _called(func: ast.expr) -> str:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
        return f"{func.value.id}.{func.attr}"
    return ""


# 1. The listeners.


def _listening() -> dict[str, str]:
    """Socket inode -> "address:port" of every TCP socket in LISTEN state on this host."""
    sockets = {}
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] != "0A":  # LISTEN
                continue
            address, port = fields[1].split(":")
            sockets[fields[9]] = f"{_address(address, width)}:{int(port, 16)}"
    return sockets


def _address(hexed: str, width: int) -> str:
    import ipaddress

    raw = bytes.fromhex(hexed)
    # /proc writes each 32-bit word in host (little-endian) order.
    ordered = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    address = ipaddress.ip_address(ordered)
    if width == 32 and address.ipv4_mapped:  # type: ignore[union-attr]
        return f"::ffff:{address.ipv4_mapped}"  # type: ignore[union-attr]
    return str(address)


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (Linux /proc)."""
    pids, queue = [], [pid]
    while queue:
        current = queue.pop()
        pids.append(current)
        try:
            for task in Path(f"/proc/{current}/task").iterdir():
                queue += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            continue
    return pids


def listeners_of(pid: int) -> list[str]:
    """The listening addresses of ``pid`` and its descendants."""
    listening = _listening()
    found = []
    for member in _tree(pid):
        try:
            descriptors = list(Path(f"/proc/{member}/fd").iterdir())
        except OSError:
            continue
        links = []
        for descriptor in descriptors:
            with contextlib.suppress(OSError):  # closed since the listing (the listing's own one, at least)
                links.append(os.readlink(descriptor))
        found += [listening[m.group(1)] for link in links if (m := re.fullmatch(r"socket:\[(\d+)\]", link))
                  and m.group(1) in listening]
    return sorted(set(found))


# 3. The secrets.


def find_secrets(texts: dict[str, str], secret_values: dict[str, str]) -> list[str]:
    """``where: which secret`` for every text that holds a secret's value."""
    return sorted(f"{where}: {name}" for where, text in texts.items() for name, value in secret_values.items()
                  if value in text)


def _run_tandem(argv: list[str], env: dict[str, str], *, timeout_s: float = 120) -> str:
    done = subprocess.run([sys.executable, "-m", "infra.cli", *argv], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=timeout_s, check=False)
    return done.stdout + done.stderr


def _help_outputs(env: dict[str, str]) -> dict[str, str]:
    """``tandem --help`` (a process, with the secrets in its environment) and every subcommand's
    help, formatted by the same parser in this process (help is built before settings are read)."""
    from infra.cli.main import build_parser

    parser = build_parser()
    subcommands: dict[str, Any] = next(a for a in parser._actions if a.dest == "command").choices or {}  # type: ignore[assignment]  # noqa: SLF001, E501
    outputs = {"tandem --help": _run_tandem(["--help"], env),
               "tandem chaos --help": _run_tandem(["chaos", "--help"], env)}
    for name, subparser in subcommands.items():
        outputs[f"tandem {name} --help"] = subparser.format_help()
        for action in subparser._actions:  # noqa: SLF001
            choices = getattr(action, "choices", None)
            for child_name, child in (choices.items() if isinstance(choices, dict) else ()):
                if hasattr(child, "format_help"):  # a subcommand's parser, not a choice of values
                    outputs[f"tandem {name} {child_name} --help"] = child.format_help()
    return outputs


def _error_outputs(bootstrap: str, secret_values: dict[str, str]) -> dict[str, str]:
    """The errors of settings that hold secrets but are wrong, and of a store that cannot be reached."""
    password, dsn = secret_values["sasl_password"], secret_values["postgres_dsn"]
    cases = {
        "SASL without a mechanism": {"TANDEM_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "TANDEM_SASL_USERNAME": "chaos",
                                     "TANDEM_SASL_PASSWORD": password},
        "an unknown SASL mechanism": {"TANDEM_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "TANDEM_SASL_MECHANISM": "BOGUS",
                                      "TANDEM_SASL_USERNAME": "chaos", "TANDEM_SASL_PASSWORD": password},
        "a mechanism on PLAINTEXT": {"TANDEM_SASL_MECHANISM": "PLAIN", "TANDEM_SASL_PASSWORD": password},
        "an unknown setting beside the secrets": {"TANDEM_SASL_PASSWORD": password, "TANDEM_NOT_A_SETTING": "x"},
    }
    outputs = {f"error: {what}": _run_tandem(["topics", "list"], env) for what, env in cases.items()}
    outputs["error: an unreachable PostgreSQL store"] = _run_tandem(
        ["experiments", "aggregate", "--idle-exit", "1"],
        {"TANDEM_BOOTSTRAP_SERVERS": bootstrap, "TANDEM_POSTGRES_DSN": dsn, "TANDEM_TOPIC_PREFIX": "leak."},
        timeout_s=120)
    return outputs


def _http_bodies(urls: dict[str, str]) -> dict[str, str]:
    bodies = {}
    for where, url in urls.items():
        try:
            with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - our loopback URLs
                bodies[where] = response.read().decode("utf-8", errors="replace")
        except OSError as exc:
            bodies[where] = f"(no answer: {exc})"
    return bodies


def _console_refusals(console_url: str, token: str) -> dict[str, str]:
    """The console's answers to writes with a wrong and with no token: they must not echo the right one."""
    answers = {}
    for label, header in (("wrong token", {"Authorization": f"Bearer {token[:-1]}x"}), ("no token", {})):
        request = urllib.request.Request(f"{console_url}/api/experiments/x/stop", data=b"{}",  # noqa: S310
                                         method="POST", headers={"Content-Type": "application/json", **header})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - our loopback URL
                answers[f"console write, {label}"] = response.read().decode(errors="replace")
        except urllib.error.HTTPError as exc:
            answers[f"console write, {label}"] = f"{exc.code} {exc.read().decode(errors='replace')}"
    return answers


# 4. SASL on the broker.


def sasl_check(work_dir: Path, secret_values: dict[str, str]) -> dict[str, Any]:
    """Tansu with ``--authentication``: plaintext and a wrong SCRAM password must be refused."""
    binary = resolve_binary(None)
    port = free_port()
    listener = f"tcp://{HOST}:{port}"
    log_path = work_dir / "auth-broker.log"
    with open(log_path, "ab") as log:
        broker = subprocess.Popen([str(binary), "broker", "--listener-url", listener, "--advertised-listener-url",
                                   listener, "--storage-engine", "memory://tansu/", "--authentication"],
                                  stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        wait_until(lambda: _port_open(port), timeout_s=20, what="the authenticating broker's port")
        user_create = subprocess.run([str(binary), "user", "create", "--broker", listener, "chaos",
                                      secret_values["sasl_password"], "--mechanism", "scram256"],
                                     capture_output=True, text=True, timeout=60, check=False)
        bootstrap = f"{HOST}:{port}"
        wrong = {"TANDEM_BOOTSTRAP_SERVERS": bootstrap, "TANDEM_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                 "TANDEM_SASL_MECHANISM": "SCRAM-SHA-256", "TANDEM_SASL_USERNAME": "chaos",
                 "TANDEM_SASL_PASSWORD": secret_values["sasl_password"] + "-wrong", "TANDEM_PROFILE": "external"}
        right = {**wrong, "TANDEM_SASL_PASSWORD": secret_values["sasl_password"]}
        plain = {"TANDEM_BOOTSTRAP_SERVERS": bootstrap, "TANDEM_PROFILE": "external"}
        from concurrent.futures import ThreadPoolExecutor

        cases = {"wrong password": wrong, "right password": right, "no SASL": plain}
        with ThreadPoolExecutor(max_workers=len(cases)) as pool:  # each waits out the client's bootstrap timeout
            answers = dict(zip(cases, pool.map(_topics_apply, cases.values()), strict=True))
    finally:
        stop_pid(broker.pid, process=broker)
    refusals = log_path.read_text(errors="replace").count("NotAuthenticated")
    return {
        "user_create_exit": user_create.returncode,
        "user_create_error": (user_create.stderr or user_create.stdout).strip().splitlines()[-1:],
        "wrong_password_refused": answers["wrong password"]["exit"] != 0,
        "plaintext_refused": answers["no SASL"]["exit"] != 0,
        "right_password_accepted": answers["right password"]["exit"] == 0,
        "broker_not_authenticated_refusals": refusals,
        "answers": answers,
    }


def _topics_apply(env: dict[str, str]) -> dict[str, Any]:
    try:
        output = subprocess.run([sys.executable, "-m", "infra.cli", "topics", "apply"], env={**os.environ, **env},
                                capture_output=True, text=True, timeout=90, check=False)
    except subprocess.TimeoutExpired:
        return {"exit": "timeout", "said": "no answer within 90 s", "output": ""}
    said = [line for line in output.stderr.splitlines() if line.strip()][-1:]
    return {"exit": output.returncode, "said": said[0][-300:] if said else "", "output": output.stdout + output.stderr}


def _port_open(port: int) -> bool:
    import socket

    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((HOST, port)) == 0


# The run.


def _start_everything(stack: ChaosStack) -> dict[str, str]:
    serve_port, console_port = free_port(), free_port()
    stack.start("features", "features", "run")
    stack.start("learner", "learner", "run")
    stack.start("aggregator", "experiments", "aggregate", "--allowed-lateness", "30m")
    stack.start("archiver", "archive", "run", "--flush-interval", "0.5")
    stack.start("serving", "serve", "--port", str(serve_port))
    stack.start("console", "console", "--port", str(console_port), "--no-monitor")
    serve_url, console_url = f"http://127.0.0.1:{serve_port}", f"http://127.0.0.1:{console_port}"
    wait_until(lambda: http_json(f"{serve_url}/health") is not None, timeout_s=120, what="serving's health",
               alive=stack.supervisor.check)
    wait_until(lambda: http_json(f"{console_url}/openapi.json") is not None, timeout_s=120, what="the console",
               alive=stack.supervisor.check)
    return {"serving": serve_url, "console": console_url}


def _work(stack: ChaosStack, serve_url: str) -> None:
    """Some traffic, good and bad, so that every worker logs what it does with records."""
    with EventPublisher(config=producer_config(stack.settings), topic=stack.settings.topic(EVENTS)) as publisher:
        for number in range(200):
            publisher.publish_bytes(f"user-{number % 7}".encode(), json.dumps({
                "event_id": f"sec-{number}", "user_id": f"user-{number % 7}", "ts": 1_767_225_600_000 + number * 1000,
                "type": "play", "item_id": "jazz-1", "genre": "jazz", "ms_played": 30_000}).encode())
        publisher.publish_bytes(b"user-1", b"{not json")
    for number in range(20):
        body = json.dumps({"user_id": f"user-{number}", "ts": 1_735_689_600_000}).encode()
        request = urllib.request.Request(f"{serve_url}/recommend", data=body,  # noqa: S310 - our loopback URL
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30):  # noqa: S310 - our loopback URL
            pass
    time.sleep(5)  # the workers read, write and log what they got


def run(work_dir: Path, seed: int, quick: bool) -> dict[str, object]:
    token = secrets.token_hex(16)
    secret_values = {"console_token": token, "sasl_password": secrets.token_hex(16),
                     "postgres_dsn": f"postgresql://chaos:{secrets.token_hex(16)}@127.0.0.1:1/chaos"}
    secret_values["postgres_password"] = secret_values["postgres_dsn"].split(":")[2].split("@")[0]
    root = Path(__file__).resolve().parents[2]
    unsafe = scan_unsafe_deserialization(root)

    with chaos_stack(work_dir, prefix="sec.", extra_env={"TANDEM_CONSOLE_TOKEN": token}) as stack:
        urls = _start_everything(stack)
        _work(stack, urls["serving"])
        stack.supervisor.check()
        processes = {"broker": stack.broker.pid, **{n: p.pid for n, p in stack.supervisor.processes.items()}}
        listeners = {name: listeners_of(pid) for name, pid in processes.items()}
        http_urls = {f"{name} {address}{path}": f"http://{address}{path}"
                     for name, addresses in listeners.items() if name != "broker"
                     for address in addresses for path in ("/metrics", "/health")}
        texts = {**_http_bodies(http_urls), **_console_refusals(urls["console"], token)}
        texts.update(_help_outputs({"TANDEM_CONSOLE_TOKEN": token,
                                    "TANDEM_SASL_PASSWORD": secret_values["sasl_password"],
                                    "TANDEM_POSTGRES_DSN": secret_values["postgres_dsn"]}))
        texts.update(_error_outputs(stack.broker.bootstrap, secret_values))
        sasl = sasl_check(work_dir, secret_values)
        texts.update({f"SASL client, {label}": answer.pop("output") for label, answer in sasl["answers"].items()})
    texts.update({f"log {path.name}": path.read_text(errors="replace") for path in sorted(work_dir.rglob("*.log"))})
    leaks = find_secrets(texts, secret_values)
    not_loopback = {name: [a for a in addresses if a.rsplit(":", 1)[0] not in LOOPBACK]
                    for name, addresses in listeners.items()}
    not_loopback = {name: addresses for name, addresses in not_loopback.items() if addresses}
    figures = {
        "listeners": listeners,
        "listeners_not_on_loopback": not_loopback,
        "unsafe_deserialization_sites": unsafe,
        "outputs_scanned": len(texts),
        "outputs_scanned_bytes": sum(len(text) for text in texts.values()),
        "secret_leaks": leaks,
        "sasl": sasl,
    }
    sasl_ok = sasl["wrong_password_refused"] and sasl["plaintext_refused"] and sasl["right_password_accepted"]
    if not sasl["right_password_accepted"]:
        figures["sasl_not_ok_because"] = (
            "Tansu 0.6.0 with --authentication answers NotAuthenticated and closes the connection on the first "
            "request of every client, before any SASL exchange (its log counts the refusals), and it refuses "
            "`tansu user create` the same way, so no SCRAM user can exist (memory storage is lost on restart): "
            "the client's SASL settings are refused whatever the password, so a wrong password being refused "
            "proves nothing and a right one cannot be shown to work on the embedded broker")
    ok = not not_loopback and not unsafe and not leaks and sasl_ok and all(listeners.values())
    return {"scenario": SCENARIO, "ok": ok, "figures": figures,
            "done": f"listeners of {len(listeners)} processes, a scan of the packages for unpickling, "
                    f"{len(texts)} outputs scanned for 4 secret values, and SASL against Tansu --authentication"}
