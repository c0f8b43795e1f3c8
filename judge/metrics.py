"""Prometheus metrics for the judge, in the text exposition format (version 0.0.4).

Written here rather than with prometheus_client: three metric families do not justify
a dependency. Counts are per process: with `--workers N` each worker keeps its own, and
a scrape of /metrics reads the worker that happened to answer (`worker` label = pid).
"""

from __future__ import annotations

import bisect
import os
import threading
from collections import Counter

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
"""Histogram upper bounds in seconds: a verification takes a few ms to tens of ms on
a small CPU; the top buckets catch a stalled worker."""

UNMATCHED = "unmatched"
"""Endpoint label for requests no route matched, so random paths cannot grow the
number of series without bound."""


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\"", "\\\"").replace("\n", "\\n")


def _labels(**labels: str) -> str:
    return "{" + ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items()) + "}"


class Metrics:
    """Thread-safe request, latency and verdict counters for one worker process."""

    def __init__(self, model_name: str = "", model_version: str = "") -> None:
        self._lock = threading.Lock()
        self._requests: Counter[tuple[str, str, int]] = Counter()
        self._bucket_counts: dict[str, list[int]] = {}
        self._latency_sum: Counter[str] = Counter()
        self._latency_count: Counter[str] = Counter()
        self._verdicts: Counter[str] = Counter()
        self.model_name = model_name
        self.model_version = model_version
        self.worker = str(os.getpid())

    def observe_request(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        """Count one finished request and its wall time in seconds."""
        with self._lock:
            self._requests[(endpoint, method, int(status))] += 1
            counts = self._bucket_counts.setdefault(endpoint, [0] * (len(LATENCY_BUCKETS_S) + 1))
            counts[bisect.bisect_left(LATENCY_BUCKETS_S, seconds)] += 1
            self._latency_sum[endpoint] += seconds
            self._latency_count[endpoint] += 1

    def observe_verdict(self, verified: bool) -> None:
        with self._lock:
            self._verdicts["verified" if verified else "rejected"] += 1

    def render(self) -> str:
        """The exposition text for a scrape."""
        with self._lock:
            requests = dict(self._requests)
            buckets = {k: list(v) for k, v in self._bucket_counts.items()}
            sums, counts = dict(self._latency_sum), dict(self._latency_count)
            verdicts = {v: self._verdicts.get(v, 0) for v in ("verified", "rejected")}
        w = self.worker
        out = ["# HELP hark_judge_requests_total HTTP requests answered, by endpoint and status.",
               "# TYPE hark_judge_requests_total counter"]
        for (endpoint, method, status), n in sorted(requests.items()):
            out.append(f"hark_judge_requests_total"
                       f"{_labels(endpoint=endpoint, method=method, status=str(status), worker=w)} {n}")
        out += ["# HELP hark_judge_request_duration_seconds Wall time from request to response.",
                "# TYPE hark_judge_request_duration_seconds histogram"]
        for endpoint in sorted(buckets):
            cumulative = 0
            for bound, n in zip((*map(repr, LATENCY_BUCKETS_S), "+Inf"), buckets[endpoint]):
                cumulative += n
                out.append(f"hark_judge_request_duration_seconds_bucket"
                           f"{_labels(endpoint=endpoint, le=bound, worker=w)} {cumulative}")
            out.append(f"hark_judge_request_duration_seconds_sum"
                       f"{_labels(endpoint=endpoint, worker=w)} {sums[endpoint]!r}")
            out.append(f"hark_judge_request_duration_seconds_count"
                       f"{_labels(endpoint=endpoint, worker=w)} {counts[endpoint]}")
        out += ["# HELP hark_judge_verdicts_total Verification verdicts given.",
                "# TYPE hark_judge_verdicts_total counter"]
        for verdict, n in verdicts.items():
            out.append(f"hark_judge_verdicts_total{_labels(verdict=verdict, worker=w)} {n}")
        out += ["# HELP hark_judge_model_info The model this worker serves.",
                "# TYPE hark_judge_model_info gauge",
                f"hark_judge_model_info{_labels(name=self.model_name, version=self.model_version, worker=w)} 1"]
        return "\n".join(out) + "\n"
