"""The gateway against a local fake Gemini: calling the fake directly; a bare pass-through
proxy on the same stack (Starlette + uvicorn + httpx, one fixed key, no pool, no database)
as the floor; our gateway (`serve-gateway`, token check, pool, per-token counting, all in
PostgreSQL); and the LiteLLM proxy as the peer (installed from bench/requirements-peers.txt
into .data/peers-venv, never into the main environment).

    python -m bench.bench_gateway [--duration 8] [--connections 50] [--no-litellm]
    python -m bench --only gateway

Load: wrk (`apt-get install -y wrk`), closed loop with --connections open connections. Added
latency = a target's p50/p99 minus the bare proxy's (or the fake's), in the same run; rps at
saturation is wrk's requests/s at that concurrency; time to first streamed byte is measured
with httpx, one stream at a time (the fake sends its first chunk at once, the rest 20 ms
apart). Every process runs on this machine, so the figures include the load generator and
the fake competing for the same cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PEERS_VENV = REPO / ".data" / "peers-venv"
MODEL = "gemini-2.0-flash"
NATIVE = f"/v1beta/models/{MODEL}:generateContent"
STREAM = f"/v1beta/models/{MODEL}:streamGenerateContent?alt=sse"
CHAT = "/v1beta/openai/chat/completions"
NATIVE_BODY = json.dumps({"contents": [{"parts": [{"text": "hi"}]}]})
CHAT_BODY = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "hi"}]})
BENCH_KEY = "AIza" + "B" * 35
LITELLM_KEY = "sk-" + os.urandom(32).hex()


# -- the processes ----------------------------------------------------------------------------

def fake_app():
    """A fast fake Gemini on the same stack: native generate/stream, OpenAI chat."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, StreamingResponse
    from starlette.routing import Route

    usage = {"promptTokenCount": 3, "candidatesTokenCount": 5, "totalTokenCount": 8}

    async def native(request: Request):
        await request.body()
        method = request.path_params["model_method"].partition(":")[2]
        if method == "streamGenerateContent":
            async def events():
                for index in range(3):
                    if index:
                        await asyncio.sleep(0.02)
                    chunk = {"candidates": [{"content": {"parts": [{"text": f"c{index}"}]}}]}
                    if index == 2:
                        chunk["usageMetadata"] = usage
                    yield f"data: {json.dumps(chunk)}\r\n\r\n".encode()
            return StreamingResponse(events(), media_type="text/event-stream")
        return JSONResponse({"candidates": [{"content": {"parts": [{"text": "OK"}],
                                                         "role": "model"},
                                             "finishReason": "STOP"}],
                             "usageMetadata": usage})

    async def chat(request: Request):
        body = json.loads(await request.body() or b"{}")
        if body.get("stream"):
            async def events():
                for index in range(3):
                    if index:
                        await asyncio.sleep(0.02)
                    chunk = {"id": "x", "object": "chat.completion.chunk", "created": 0,
                             "model": MODEL, "choices": [{"index": 0, "delta": {
                                 "content": f"c{index}"}, "finish_reason": None}]}
                    yield f"data: {json.dumps(chunk)}\n\n".encode()
                yield b"data: [DONE]\n\n"
            return StreamingResponse(events(), media_type="text/event-stream")
        return JSONResponse({"id": "x", "object": "chat.completion", "created": 0,
                             "model": MODEL, "choices": [{"index": 0, "finish_reason": "stop",
                                                          "message": {"role": "assistant",
                                                                      "content": "OK"}}],
                             "usage": {"prompt_tokens": 3, "completion_tokens": 5,
                                       "total_tokens": 8}})

    return Starlette(routes=[Route("/v1beta/models/{model_method}", native, methods=["POST"]),
                             Route(CHAT, chat, methods=["POST"])])


def bare_app(upstream: str):
    """The floor: the same stack passing requests through with one fixed key."""
    import contextlib

    import httpx2 as httpx  # the gateway's client, so the floor is the same stack
    from starlette.applications import Starlette
    from starlette.background import BackgroundTask
    from starlette.requests import Request
    from starlette.responses import Response, StreamingResponse
    from starlette.routing import Route

    state: dict = {}

    @contextlib.asynccontextmanager
    async def lifespan(app):
        limits = httpx.Limits(max_connections=1000, max_keepalive_connections=200)
        async with httpx.AsyncClient(limits=limits, trust_env=False) as client:
            state["client"] = client
            yield

    async def proxy(request: Request):
        client: httpx.AsyncClient = state["client"]
        openai = "/openai/" in request.url.path
        headers = {"content-type": request.headers.get("content-type", "application/json")}
        if openai:
            headers["authorization"] = f"Bearer {BENCH_KEY}"
        else:
            headers["x-goog-api-key"] = BENCH_KEY
        upstream_request = client.build_request(
            request.method, upstream + request.url.path, params=request.query_params,
            headers=headers, content=await request.body())
        response = await client.send(upstream_request, stream=True)
        kept = {"content-type": response.headers.get("content-type", "application/json")}
        if kept["content-type"].startswith("text/event-stream"):
            return StreamingResponse(response.aiter_bytes(), headers=kept,
                                     background=BackgroundTask(response.aclose))
        content = await response.aread()
        await response.aclose()
        return Response(content, status_code=response.status_code, headers=kept)

    return Starlette(routes=[Route("/{path:path}", proxy, methods=["GET", "POST"])],
                     lifespan=lifespan)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, process: subprocess.Popen, timeout: float = 300) -> None:
    import httpx
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: the process exited ({process.returncode})")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


@contextmanager
def process(args: list[str], url: str, env: dict | None = None,
            ready: str = "/") -> Iterator[str]:
    log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in the finally below
    proc = subprocess.Popen(args, cwd=REPO, env={**os.environ, **(env or {})},  # noqa: S603
                            stdout=log, stderr=log)
    try:
        wait_ready(url + ready, proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def serve(kind: str, port: int, upstream: str = "") -> None:
    import uvicorn
    app = fake_app() if kind == "fake" else bare_app(upstream)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# -- LiteLLM ------------------------------------------------------------------------------------

def litellm_binary() -> Path | None:
    """.data/peers-venv/bin/litellm, installing bench/requirements-peers.txt there first."""
    binary = PEERS_VENV / "bin" / "litellm"
    if binary.exists():
        return binary
    try:
        subprocess.run([sys.executable, "-m", "venv", str(PEERS_VENV)], check=True)
        subprocess.run([str(PEERS_VENV / "bin" / "pip"), "install", "-q", "-r",
                        str(REPO / "bench" / "requirements-peers.txt")], check=True,
                       timeout=1800)
    except (subprocess.SubprocessError, OSError) as error:
        print(f"LiteLLM not installed: {error}", file=sys.stderr)
        return None
    return binary if binary.exists() else None


@contextmanager
def litellm(upstream: str) -> Iterator[str | None]:
    binary = litellm_binary()
    if binary is None:
        yield None
        return
    with tempfile.TemporaryDirectory() as folder:
        config = Path(folder) / "config.yaml"
        config.write_text(
            "model_list:\n"
            f"  - model_name: {MODEL}\n"
            "    litellm_params:\n"
            f"      model: openai/{MODEL}\n"
            f"      api_base: {upstream}/v1beta/openai\n"
            f"      api_key: {BENCH_KEY}\n"
            "litellm_settings:\n  telemetry: false\n  set_verbose: false\n"
            # LiteLLM refuses to start without one; checked in memory (no database here).
            f"general_settings:\n  master_key: {LITELLM_KEY}\n")
        port = free_port()
        env = {"LITELLM_LOG": "ERROR", "LITELLM_TELEMETRY": "False",
               "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
        with process([str(binary), "--config", str(config), "--host", "127.0.0.1",
                      "--port", str(port), "--num_workers", "1"],
                     f"http://127.0.0.1:{port}", env, ready="/health/liveliness") as url:
            yield url


# -- our gateway, on a scratch database ----------------------------------------------------------

@contextmanager
def gateway(upstream: str) -> Iterator[tuple[str, str]]:
    from bench.common import bench_environment, scratch_database
    from db.session import Actor, session_scope
    from lib.keys.writes import add_key
    from lib.runtime import build_runtime
    from lib.tokens import create_token

    with bench_environment() as server, \
            scratch_database(f"gk_bench_gateway_{os.getpid()}", server) as url:
        runtime = build_runtime(env={**os.environ, "DATABASE_URL": url},
                                apply_migrations=False)
        with session_scope(Actor.service("cli"), engine=runtime.engine) as session:
            for index in range(20):
                add_key(session, runtime.master_key, name=f"bench-{index}",
                        api_key="AIza" + f"{index:02d}" + "K" * 33)
            token = create_token(session, name="bench")[1]
        port = free_port()
        env = {"DATABASE_URL": url, "GEMINI_API_BASE_URL": upstream,
               "GEMINI_KEYS_LOG_LEVEL": "WARNING"}
        with process([sys.executable, "-m", "lib.cli", "serve-gateway", "--port", str(port)],
                     f"http://127.0.0.1:{port}", env, ready="/healthz") as base:
            yield base, token


# -- load -----------------------------------------------------------------------------------------

_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0}


def _seconds(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text.strip()).groups()
    return float(number) * _UNITS[unit]


def wrk(url: str, body: str, headers: dict[str, str], *, connections: int,
        duration: float) -> dict:
    """p50, p99 (seconds) and requests/s of POSTs at `connections` concurrent."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write('wrk.method = "POST"\n')
        script.write(f"wrk.body = {json.dumps(body)}\n")
        script.write('wrk.headers["Content-Type"] = "application/json"\n')
        for name, value in headers.items():
            script.write(f'wrk.headers["{name}"] = "{value}"\n')
    try:
        def run(seconds: float) -> str:
            return subprocess.run(
                ["wrk", "-t2", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency",
                 "--timeout", "30s",
                 "-s", script.name, url], capture_output=True, text=True, check=True,
                timeout=seconds + 60).stdout
        run(2)  # warm-up: connections, caches, the JIT-less interpreter's first paths
        out = run(duration)
    finally:
        os.unlink(script.name)
    p50 = _seconds(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))
    p99 = _seconds(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    timeouts = re.search(r"timeout (\d+)", out)
    return {"p50": p50, "p99": p99, "rps": rps,
            "non_2xx": (int(errors.group(1)) if errors else 0)
            + (int(timeouts.group(1)) if timeouts else 0)}


def first_byte(url: str, body: str, headers: dict[str, str], n: int = 30) -> float:
    """Median time to the first streamed byte, one stream at a time."""
    import httpx
    times = []
    with httpx.Client(timeout=30) as client:
        for index in range(n + 3):
            started = time.perf_counter()
            with client.stream("POST", url, content=body,
                               headers={"content-type": "application/json", **headers}) as r:
                r.raise_for_status()
                chunks = r.iter_raw()
                next(chunks)
                took = time.perf_counter() - started
                for _ in chunks:
                    pass
            if index >= 3:
                times.append(took)
    return statistics.median(times)


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def measure(duration: float = 8, connections: int = 50, with_litellm: bool = True) -> dict:
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed (apt-get install -y wrk)")
    results: dict = {"load_before": load_average(), "connections": connections}
    fake_port, bare_port = free_port(), free_port()
    with ExitStack() as stack:
        fake = stack.enter_context(process(
            [sys.executable, "-m", "bench.bench_gateway", "serve-fake", str(fake_port)],
            f"http://127.0.0.1:{fake_port}", ready="/nothing"))
        bare = stack.enter_context(process(
            [sys.executable, "-m", "bench.bench_gateway", "serve-bare", str(bare_port), fake],
            f"http://127.0.0.1:{bare_port}", ready="/nothing"))
        ours, token = stack.enter_context(gateway(fake))
        peer = stack.enter_context(litellm(fake)) if with_litellm else None
        native_key = {"x-goog-api-key": token}
        bearer = {"Authorization": f"Bearer {token}"}
        targets = {
            "native: direct": (fake + NATIVE, NATIVE_BODY, {"x-goog-api-key": BENCH_KEY}),
            "native: bare proxy": (bare + NATIVE, NATIVE_BODY, {}),
            "native: gateway": (ours + NATIVE, NATIVE_BODY, native_key),
            "openai: direct": (fake + CHAT, CHAT_BODY, {"Authorization": f"Bearer {BENCH_KEY}"}),
            "openai: bare proxy": (bare + CHAT, CHAT_BODY, {}),
            "openai: gateway": (ours + CHAT, CHAT_BODY, bearer),
        }
        if peer:
            targets["openai: LiteLLM"] = (peer + "/chat/completions", CHAT_BODY,
                                          {"Authorization": f"Bearer {LITELLM_KEY}"})
        for name, (url, body, headers) in targets.items():
            print(f"  load: {name}", file=sys.stderr, flush=True)
            results[name] = wrk(url, body, headers, connections=connections, duration=duration)
        stream_chat = json.dumps({**json.loads(CHAT_BODY), "stream": True})
        streams = {
            "native: direct": (fake + STREAM, NATIVE_BODY, {"x-goog-api-key": BENCH_KEY}),
            "native: bare proxy": (bare + STREAM, NATIVE_BODY, {}),
            "native: gateway": (ours + STREAM, NATIVE_BODY, native_key),
            "openai: gateway": (ours + CHAT, stream_chat, bearer),
        }
        if peer:
            streams["openai: LiteLLM"] = (peer + "/chat/completions", stream_chat,
                                          {"Authorization": f"Bearer {LITELLM_KEY}"})
        for name, (url, body, headers) in streams.items():
            print(f"  first byte: {name}", file=sys.stderr, flush=True)
            results[name]["ttfb"] = first_byte(url, body, headers)
    results["load_after"] = load_average()
    return results


def report(results: dict) -> str:
    lines = [f"{results['connections']} concurrent connections; load average before "
             f"{results['load_before']}, after {results['load_after']}", "",
             "| target | p50 | p99 | added p50 / p99 over bare proxy | rps | first streamed byte |",
             "|---|---|---|---|---|---|"]
    for name, r in results.items():
        if not isinstance(r, dict):
            continue
        family = name.split(":")[0]
        floor = results.get(f"{family}: bare proxy")
        added = "—"
        if floor and "bare proxy" not in name and "direct" not in name:
            added = (f"{(r['p50'] - floor['p50']) * 1000:+.2f} ms / "
                     f"{(r['p99'] - floor['p99']) * 1000:+.2f} ms")
        ttfb = f"{r['ttfb'] * 1000:.1f} ms" if "ttfb" in r else "—"
        bad = f" ({r['non_2xx']} non-2xx)" if r["non_2xx"] else ""
        lines.append(f"| {name} | {r['p50'] * 1000:.2f} ms | {r['p99'] * 1000:.2f} ms | "
                     f"{added} | {r['rps']:.0f}{bad} | {ttfb} |")
    gateway_rps = results.get("openai: gateway", {}).get("rps")
    peer_rps = results.get("openai: LiteLLM", {}).get("rps")
    if gateway_rps and peer_rps:
        lines += ["", f"gateway / LiteLLM throughput (OpenAI route): "
                      f"{gateway_rps / peer_rps:.2f}× (aim ≥ 2×)"]
    return "\n".join(lines)


def run(quick: bool = False) -> list[dict]:
    """Rows for `python -m bench`: the gateway's p50 against the bare proxy's, and its
    request time at saturation against LiteLLM's."""
    from bench.common import row
    results = measure(duration=3 if quick else 8, with_litellm=not quick)
    print(report(results), file=sys.stderr)
    rows = [row("gateway p50, 50 concurrent (native)", results["native: gateway"]["p50"],
                "bare pass-through p50", results["native: bare proxy"]["p50"],
                "≤ +1 ms"),
            row("gateway p99, 50 concurrent (native)", results["native: gateway"]["p99"],
                "bare pass-through p99", results["native: bare proxy"]["p99"],
                "≤ +5 ms")]
    if "openai: LiteLLM" in results:
        rows.append(row("gateway time per request at saturation (OpenAI route)",
                        1 / results["openai: gateway"]["rps"], "LiteLLM's",
                        1 / results["openai: LiteLLM"]["rps"], "≤ 0.5×"))
    return rows


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("serve-fake", "serve-bare"):
        serve(argv[0].removeprefix("serve-"), int(argv[1]), argv[2] if len(argv) > 2 else "")
        return 0
    parser = argparse.ArgumentParser(prog="python -m bench.bench_gateway")
    parser.add_argument("--duration", type=float, default=8)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--no-litellm", action="store_true")
    args = parser.parse_args(argv)
    print(report(measure(args.duration, args.connections, not args.no_litellm)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
