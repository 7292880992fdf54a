"""Prometheus text for /metrics: requests, upstream attempts, errors by kind, latency
histograms, usable keys. Counters live in this process (Prometheus scrapes each one);
nothing here holds a secret: labels are routes, status codes and error kinds."""

from __future__ import annotations

import threading
from collections import Counter

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Histogram:
    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.total = 0.0
        self.n = 0

    def observe(self, seconds: float) -> None:
        index = next((i for i, bound in enumerate(BUCKETS) if seconds <= bound), len(BUCKETS))
        self.counts[index] += 1
        self.total += seconds
        self.n += 1


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: Counter[tuple[str, int]] = Counter()
        self.attempts: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.latency: dict[str, Histogram] = {}
        self.first_byte = Histogram()

    def request(self, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[(route, status)] += 1
            self.latency.setdefault(route, Histogram()).observe(seconds)

    def attempt(self, outcome: str) -> None:
        with self._lock:
            self.attempts[outcome] += 1

    def error(self, kind: str) -> None:
        with self._lock:
            self.errors[kind] += 1

    def render(self, keys_usable: int | None) -> str:
        lines: list[str] = []
        with self._lock:
            lines += ["# HELP gateway_requests_total Requests answered, by route and status.",
                      "# TYPE gateway_requests_total counter"]
            lines += [f'gateway_requests_total{{route="{r}",code="{c}"}} {n}'
                      for (r, c), n in sorted(self.requests.items())]
            lines += ["# HELP gateway_upstream_attempts_total Calls to Gemini, by outcome.",
                      "# TYPE gateway_upstream_attempts_total counter"]
            lines += [f'gateway_upstream_attempts_total{{outcome="{o}"}} {n}'
                      for o, n in sorted(self.attempts.items())]
            lines += ["# HELP gateway_errors_total Requests that ended in an error, by kind.",
                      "# TYPE gateway_errors_total counter"]
            lines += [f'gateway_errors_total{{kind="{k}"}} {n}'
                      for k, n in sorted(self.errors.items())]
            lines += ["# HELP gateway_request_duration_seconds Time to the response's "
                      "headers (streams: to the first byte), by route.",
                      "# TYPE gateway_request_duration_seconds histogram"]
            for route, hist in sorted(self.latency.items()):
                lines += _histogram("gateway_request_duration_seconds", hist,
                                    f'route="{route}",')
        if keys_usable is not None:
            lines += ["# HELP gateway_keys_usable Keys the pool may hand out now.",
                      "# TYPE gateway_keys_usable gauge", f"gateway_keys_usable {keys_usable}"]
        return "\n".join(lines) + "\n"


def _histogram(name: str, hist: Histogram, labels: str) -> list[str]:
    lines, running = [], 0
    for bound, count in zip((*BUCKETS, float("inf")), hist.counts, strict=True):
        running += count
        shown = "+Inf" if bound == float("inf") else f"{bound:g}"
        lines.append(f'{name}_bucket{{{labels}le="{shown}"}} {running}')
    lines.append(f"{name}_sum{{{labels.rstrip(',')}}} {hist.total:.6f}")
    lines.append(f"{name}_count{{{labels.rstrip(',')}}} {hist.n}")
    return lines
