#!/usr/bin/env python3
"""Opens Remat HTML reports in headless Chromium and checks them as a reader's browser would.

For each report: loads it from a file:// URL, fails on any console error, uncaught exception or
failed resource load, measures how long it took to open (navigation start to the load event,
and to the first paint), and saves one PNG screenshot per <section> (clipped to the section).

    python3 scripts/check_report.py [--png-dir DIR] [--max-load-seconds S] [--loads N] [--width PX] REPORT.html ...

Exit status 0 when every report passed, 1 when one failed (each failure printed), 2 when
Chromium is missing or does not start. Needs only the Python standard library and Chromium
(Debian: the `chromium` package; set CHROMIUM to another binary). Talks to Chromium over the
DevTools protocol (a WebSocket on 127.0.0.1), so it runs without a display.
"""
import argparse
import base64
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request


class DevTools:
    """A minimal client of the DevTools protocol over one WebSocket (RFC 6455, client side)."""

    def __init__(self, url, timeout):
        assert url.startswith("ws://")
        hostport, path = url[5:].split("/", 1)
        host, port = hostport.split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (f"GET /{path} HTTP/1.1\r\nHost: {hostport}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
        self.sock.sendall(request.encode())
        response = b""
        while b"\r\n\r\n" not in response:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise RuntimeError("DevTools closed the connection during the handshake")
            response += chunk
        header, self.buffer = response.split(b"\r\n\r\n", 1)
        if b" 101 " not in header.split(b"\r\n")[0]:
            raise RuntimeError(f"DevTools refused the WebSocket: {header.decode(errors='replace')}")
        self.next_id = 0
        self.events = []

    def _read(self, n):
        while len(self.buffer) < n:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise RuntimeError("DevTools closed the connection")
            self.buffer += chunk
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def _send(self, text):
        payload = text.encode()
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            head = struct.pack("!BB", 0x81, 0x80 | n)
        elif n < 1 << 16:
            head = struct.pack("!BBH", 0x81, 0x80 | 126, n)
        else:
            head = struct.pack("!BBQ", 0x81, 0x80 | 127, n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(head + mask + masked)

    def _message(self):
        parts = []
        while True:
            b0, b1 = self._read(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", self._read(8))[0]
            payload = self._read(n)  # the server does not mask
            opcode = b0 & 0x0F
            if opcode == 0x8:
                raise RuntimeError("DevTools closed the WebSocket")
            if opcode in (0x9, 0xA):  # ping, pong: not part of a message
                continue
            parts.append(payload)
            if b0 & 0x80:
                return json.loads(b"".join(parts))

    def call(self, method, **params):
        self.next_id += 1
        self._send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            m = self._message()
            if m.get("id") == self.next_id:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})
            self.events.append(m)

    def wait_for(self, method, deadline):
        for i, m in enumerate(self.events):
            if m.get("method") == method:
                return self.events.pop(i)
        while time.monotonic() < deadline:
            m = self._message()
            if m.get("method") == method:
                return m
            self.events.append(m)
        raise TimeoutError(f"no {method} before the deadline")


def find_chromium():
    for name in [os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome", "google-chrome-stable"]:
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def start_chromium(binary, profile, width, timeout):
    args = [binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
            "--disable-extensions", "--disable-background-networking", "--hide-scrollbars", f"--user-data-dir={profile}",
            "--remote-debugging-port=0", "--remote-allow-origins=*", f"--window-size={width},1000", "about:blank"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    port_file = os.path.join(profile, "DevToolsActivePort")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{binary} exited with status {proc.returncode}: {proc.stderr.read().decode(errors='replace')[-2000:]}")
        if os.path.exists(port_file):
            lines = open(port_file).read().split()
            if len(lines) >= 1:
                port = int(lines[0])
                for _ in range(50):
                    try:
                        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2) as r:
                            pages = [p for p in json.load(r) if p.get("type") == "page"]
                        if pages:
                            return proc, pages[0]["webSocketDebuggerUrl"]
                    except OSError:
                        pass
                    time.sleep(0.1)
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{binary} did not open its DevTools port within {timeout} s")


def check(devtools, path, png_dir, width, max_load, timeout, loads=3):
    """Opens `path` `loads` times; returns a list of problems (empty: passed) and a summary line.
    The load time checked is the median of the loads (a shared machine makes single loads noisy)."""
    times = []
    for i in range(loads):
        problems, summary, t = check_once(devtools, path, png_dir if i == loads - 1 else None, width, timeout)
        times.append(t)
        if problems:
            return problems, summary
    times.sort()
    median = times[len(times) // 2]
    if median > max_load:
        problems.append(f"took {median:.2f} s to open (median load event of {loads}), more than {max_load} s")
    return problems, summary + f"; median load event of {loads} loads {median:.2f} s"


def check_once(devtools, path, png_dir, width, timeout):
    """Opens `path` once: (problems, summary line, seconds to the load event)."""
    problems = []
    devtools.events.clear()
    for domain in ("Page", "Runtime", "Log", "Network"):
        devtools.call(f"{domain}.enable")
    devtools.call("Emulation.setDeviceMetricsOverride", width=width, height=1000, deviceScaleFactor=1, mobile=False)
    url = "file://" + os.path.abspath(path)
    started = time.monotonic()
    nav = devtools.call("Page.navigate", url=url)
    if nav.get("errorText"):
        return [f"could not open {url}: {nav['errorText']}"], "", 0
    devtools.wait_for("Page.loadEventFired", started + timeout)
    wall = time.monotonic() - started
    timing = devtools.call("Runtime.evaluate", returnByValue=True, expression="""JSON.stringify((() => {
        const n = performance.getEntriesByType('navigation')[0];
        const paint = performance.getEntriesByName('first-contentful-paint')[0];
        return {load: n.loadEventEnd, dom: n.domContentLoadedEventEnd, paint: paint ? paint.startTime : null,
                sections: [...document.querySelectorAll('section')].map(s => { const r = s.getBoundingClientRect();
                    return {id: s.id, x: r.left + scrollX, y: r.top + scrollY, w: r.width, h: r.height}; }),
                svgs: document.querySelectorAll('svg').length,
                height: document.documentElement.scrollHeight};
    })())""")["result"]["value"]
    t = json.loads(timing)
    # Let pending console messages arrive, then look at everything the page said.
    devtools.call("Runtime.evaluate", expression="1")
    for m in devtools.events:
        method, params = m.get("method"), m.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            problems.append("console error: " + " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", [])))
        elif method == "Runtime.exceptionThrown":
            problems.append("uncaught exception: " + json.dumps(params.get("exceptionDetails", {}))[:500])
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            e = params["entry"]
            problems.append(f"console error ({e.get('source')}): {e.get('text')} {e.get('url', '')}".strip())
        elif method == "Network.loadingFailed":
            problems.append(f"failed to load a resource: {params.get('errorText')}")
    load = t["load"] / 1000
    if not t["sections"]:
        problems.append("no <section> in the document")
    saved = []
    if png_dir:
        os.makedirs(png_dir, exist_ok=True)
        stem = os.path.splitext(os.path.basename(path))[0]
        for s in t["sections"]:
            if s["h"] <= 0:
                problems.append(f"section #{s['id']} has no height")
                continue
            shot = devtools.call("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                                 clip={"x": s["x"], "y": s["y"], "width": s["w"], "height": s["h"], "scale": 1})
            out = os.path.join(png_dir, f"{stem}-{s['id']}.png")
            tmp = out + ".tmp"
            with open(tmp, "wb") as f:
                f.write(base64.b64decode(shot["data"]))
            os.replace(tmp, out)
            saved.append(out)
    size = os.path.getsize(path)
    paint = f", first paint {t['paint'] / 1000:.2f} s" if t["paint"] is not None else ""
    summary = (f"{path}: {size / 1024:.0f} KiB, {t['svgs']} SVG figures, {len(t['sections'])} sections; opened in "
               f"{load:.2f} s (load event; DOM ready {t['dom'] / 1000:.2f} s{paint}; {wall:.2f} s from navigate to load)"
               + (f"; {len(saved)} screenshots in {png_dir}" if png_dir else ""))
    return problems, summary, load


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("reports", nargs="+")
    parser.add_argument("--png-dir", help="where to save one PNG per section (REPORT-SECTION.png)")
    parser.add_argument("--max-load-seconds", type=float, default=1.0, help="the most the median load may take")
    parser.add_argument("--loads", type=int, default=3, help="loads of each report (the median is checked; the last one is screenshot)")
    parser.add_argument("--width", type=int, default=900, help="viewport width in CSS pixels")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds for Chromium to start and each report to load")
    args = parser.parse_args()
    for r in args.reports:
        if not os.path.isfile(r):
            print(f"check_report: no such file: {r}", file=sys.stderr)
            return 1
    binary = find_chromium()
    if not binary:
        print("check_report: Chromium is not installed (Debian: apt-get install chromium; or set CHROMIUM)", file=sys.stderr)
        return 2
    profile = tempfile.mkdtemp(prefix="remat-chromium-")
    proc = None
    try:
        try:
            proc, ws = start_chromium(binary, profile, args.width, args.timeout)
            devtools = DevTools(ws, args.timeout)
        except (RuntimeError, OSError) as e:
            print(f"check_report: {e}", file=sys.stderr)
            return 2
        failed = 0
        for r in args.reports:
            try:
                problems, summary = check(devtools, r, args.png_dir, args.width, args.max_load_seconds, args.timeout, max(1, args.loads))
            except (RuntimeError, TimeoutError, OSError) as e:
                problems, summary = [str(e)], ""
            if summary:
                print(summary)
            for p in problems:
                print(f"{r}: FAIL: {p}", file=sys.stderr)
            failed += bool(problems)
        return 1 if failed else 0
    finally:
        if proc:
            proc.kill()
            proc.wait()
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
