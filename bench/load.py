"""A small load generator (its own process, threads, one keep-alive connection per client):
`python bench/load.py HOST:PORT SETUP.json SCENARIO CLIENTS REQUESTS_PER_CLIENT` prints one
JSON line: p50/p95/mean in ms, throughput, errors. Scenarios: floor (the pages' floor: the
cheapest signed-in page, bench/floor.py), patient_list, patient_page, worklist, crs_save (GET
the edit form of a CRS episode, then time the POST that saves it), and save_worklist ("a save,
then the worklist": save a CRS episode of the nurse's site as crs_save does, untimed, then time
the worklist that follows it; every save gives the site a new data token, so this is the
worklist recomputed after a write, not the cached one)."""

from __future__ import annotations

import http.client
import itertools
import json
import random
import statistics
import sys
import threading
import time
import urllib.parse
from html.parser import HTMLParser


class FormFields(HTMLParser):
    """The fields of each <form method=post> as a browser would submit them (`record`: the
    largest one, the record's form rather than the header's language switch)."""

    @property
    def record(self) -> list[tuple[str, str]]:
        return max(self.forms, key=len) if self.forms else []

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[list[tuple[str, str]]] = []
        self.fields: list[tuple[str, str]] = []
        self.in_form = self.done = False
        self.select: str | None = None
        self.select_value: str | None = None
        self.first_option: str | None = None
        self.textarea: str | None = None
        self.text = ""

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form" and (a.get("method") or "").lower() == "post":
            self.in_form = True
            self.forms.append([])
            self.fields = self.forms[-1]
        if not self.in_form:
            return
        name = a.get("name")
        if tag == "input" and name:
            kind = (a.get("type") or "text").lower()
            if kind in ("checkbox", "radio"):
                if "checked" in a:
                    self.fields.append((name, a.get("value") or "on"))
            elif kind not in ("submit", "button", "file"):
                self.fields.append((name, a.get("value") or ""))
        elif tag == "select" and name:
            self.select, self.select_value, self.first_option = name, None, None
        elif tag == "option" and self.select:
            if self.first_option is None:
                self.first_option = a.get("value") or ""
            if "selected" in a:
                self.select_value = a.get("value") or ""
        elif tag == "textarea" and name:
            self.textarea, self.text = name, ""

    def handle_data(self, data):
        if self.textarea:
            self.text += data

    def handle_endtag(self, tag):
        if tag == "select" and self.select:
            value = self.select_value if self.select_value is not None else self.first_option
            self.fields.append((self.select, value or ""))
            self.select = None
        elif tag == "textarea" and self.textarea:
            self.fields.append((self.textarea, self.text.strip("\n")))
            self.textarea = None
        elif tag == "form" and self.in_form:
            self.in_form, self.done = False, True


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def main() -> None:
    address, setup_path, scenario, clients, per_client = sys.argv[1:6]
    host, port = address.split(":")
    with open(setup_path) as setup_file:
        setup = json.load(setup_file)
    clients, per_client = int(clients), int(per_client)
    patients = itertools.cycle(setup["patients"])
    crs = itertools.cycle(setup["crs"])
    lock = threading.Lock()
    latencies: list[float] = []
    errors: list[str] = []
    barrier = threading.Barrier(clients)

    def next_of(pool):
        with lock:
            return next(pool)

    def client(number: int) -> None:
        session = setup["sessions"][number % len(setup["sessions"])]
        conn = http.client.HTTPConnection(host, int(port), timeout=120)
        cookies = {"sessionid": session}

        def request(method, path, body=None):
            headers = {
                "Host": "127.0.0.1",
                "Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items()),
            }
            if body is not None:
                headers["Content-Type"] = "application/x-www-form-urlencoded"
                headers["Referer"] = f"http://127.0.0.1:{port}{path}"
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            content = response.read()
            for header, value in response.getheaders():
                if header.lower() == "set-cookie":
                    name, _, rest = value.partition("=")
                    cookies[name] = rest.split(";")[0]
            return response.status, content

        def crs_form(path: str) -> str | None:
            """The edit form of a CRS episode, filled in as a browser would send it back
            unchanged with a reason (None, and an error counted, if it cannot be read)."""
            status, content = request("GET", path)
            if status != 200:
                with lock:
                    errors.append(f"GET {path} {status}")
                return None
            parser = FormFields()
            parser.feed(content.decode())
            fields = dict(parser.record)
            for name in fields:
                if "reason" in name:
                    fields[name] = "bench: re-saved unchanged"
            return urllib.parse.urlencode(fields)

        rng = random.Random(number)
        barrier.wait()
        for _ in range(per_client):
            try:
                if scenario == "floor":
                    path, method, body = "/bench/floor/", "GET", None
                elif scenario == "patient_list":
                    page = rng.randint(1, 40)
                    path, method, body = f"/patients/?page={page}", "GET", None
                elif scenario == "patient_page":
                    path, method, body = f"/patients/{next_of(patients)}/", "GET", None
                elif scenario == "worklist":
                    path, method, body = "/worklist/", "GET", None
                elif scenario == "crs_save":
                    path = f"/records/crs/{next_of(crs)}/"
                    body = crs_form(path)
                    if body is None:
                        continue
                    method = "POST"
                elif scenario == "save_worklist":
                    saved = f"/records/crs/{next_of(crs)}/"
                    body = crs_form(saved)
                    if body is None:
                        continue
                    status, content = request("POST", saved, body)
                    if status != 302:
                        with lock:
                            errors.append(f"POST {saved} {status} {content[:300]!r}")
                        continue
                    path, method, body = "/worklist/", "GET", None
                started = time.perf_counter()
                status, content = request(method, path, body)
                elapsed = (time.perf_counter() - started) * 1000
                ok = status == 200 if method == "GET" else status == 302
                with lock:
                    latencies.append(elapsed)
                    if not ok:
                        errors.append(f"{method} {path} {status} {content[:300]!r}")
            except Exception as error:
                with lock:
                    errors.append(f"{type(error).__name__}: {error}")
                conn = http.client.HTTPConnection(host, int(port), timeout=120)

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    print(
        json.dumps(
            {
                "scenario": scenario,
                "clients": clients,
                "requests": len(latencies),
                "p50_ms": round(percentile(latencies, 0.5), 1) if latencies else None,
                "p95_ms": round(percentile(latencies, 0.95), 1) if latencies else None,
                "mean_ms": round(statistics.fmean(latencies), 1) if latencies else None,
                "throughput_rps": round(len(latencies) / wall, 1),
                "errors": len(errors),
                "error_samples": errors[:3],
            }
        )
    )


if __name__ == "__main__":
    main()
