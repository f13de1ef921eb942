#!/usr/bin/env python3
"""wgnn's tests in a real browser: headless Chromium on WebGPU (SwiftShader where there is no GPU).

Serves web/dist/ (build it first: bash web/build.sh) on 127.0.0.1, opens it in
`chromium --headless=new --no-sandbox --enable-unsafe-webgpu`, drives the page over the DevTools
protocol (--remote-debugging-pipe), waits on `window.wgnnReady`, and checks in the browser:

- dropout forward and backward against the host's `philox::keep`, bit for bit: the host
  function itself (wgnn::philox compiled to wasm, run on the CPU) and, independently, the
  Philox-4x32-10 port below (checked against Random123's known answers first); seeds and
  offsets above 2^32, rates 0, 1 and between, lengths that are not multiples of 4;
- matmul, conv2d and softmax cross-entropy against f64 references computed here, with the
  native tests' tolerances (relative 1e-5 of the output's largest magnitude; the loss also
  absolute 1e-6, its gradient absolute 1e-5 / rows);
- that bad arguments reject with wgnn's message;
- the demo: trains the MLP to at least 70% test accuracy, saves a screenshot of the page
  (docs/web_demo.png), and reads the downloaded safetensors back (shapes, names, finite
  values); with --embed, `cargo run --example embed -- --weights FILE` loads it natively too.

Prints the adapter and the seconds per epoch. Exits non-zero on any failure. Python 3 standard
library only.
"""

import argparse
import base64
import functools
import http.server
import json
import math
import os
import random
import select
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIST = os.path.join(ROOT, "web", "dist")

FAILURES = []


def check(cond, what):
    if cond:
        print(f"ok   {what}")
    else:
        print(f"FAIL {what}")
        FAILURES.append(what)
    return cond


# ---------------------------------------------------------------- Philox-4x32-10, independently
MASK = 0xFFFFFFFF
M0, M1, W0, W1 = 0xD2511F53, 0xCD9E8D57, 0x9E3779B9, 0xBB67AE85


def philox(c, k):
    c0, c1, c2, c3 = c
    k0, k1 = k
    for r in range(10):
        if r:
            k0, k1 = (k0 + W0) & MASK, (k1 + W1) & MASK
        p0, p1 = M0 * c0, M1 * c2
        c0, c1, c2, c3 = (p1 >> 32) ^ c1 ^ k0, p1 & MASK, (p0 >> 32) ^ c3 ^ k1, p0 & MASK
    return (c0, c1, c2, c3)


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def keep_mask(n, p, seed, offset):
    """wgnn's documented mask (src/philox.rs): element i kept iff philox word >= threshold."""
    p = f32(p)
    if math.isnan(p) or p >= 1.0:
        return [0] * n
    if p <= 0.0:
        return [1] * n
    t = math.floor(p * 4294967296.0 + 0.5)  # round half away from zero; exact here
    t = min(t, MASK)
    key = (seed & MASK, seed >> 32)
    out = []
    for j in range((n + 3) // 4):
        words = philox((j & MASK, j >> 32, offset & MASK, offset >> 32), key)
        out.extend(1 if wd >= t else 0 for wd in words)
    return out[:n]


def philox_self_test():
    # Random123's known-answer vectors for philox4x32_10.
    kat = [
        ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
        ((MASK,) * 4, (MASK, MASK), (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
        (
            (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
            (0xA4093822, 0x299F31D0),
            (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
        ),
    ]
    for c, k, want in kat:
        if philox(c, k) != want:
            raise SystemExit(f"the Python Philox port fails Random123's known answer for {c}")


# ---------------------------------------------------------------- f64 references
def matmul_ref(a, b, m, k, n):
    out = [0.0] * (m * n)
    for i in range(m):
        row = a[i * k:(i + 1) * k]
        for j in range(n):
            out[i * n + j] = math.fsum(row[t] * b[t * n + j] for t in range(k))
    return out


def axis(size, k, stride, padding):
    if padding == "valid":
        return (size - k) // stride + 1, 0
    out = -(-size // stride)
    total = max((out - 1) * stride + k - size, 0)
    return out, total // 2


def conv2d_ref(x, xs, w, ws, stride, padding):
    n, h, wd, c = xs
    kh, kw, ci, co = ws
    oh, pt = axis(h, kh, stride, padding)
    ow, pl = axis(wd, kw, stride, padding)
    out = []
    for b in range(n):
        for oy in range(oh):
            for ox in range(ow):
                for o in range(co):
                    terms = []
                    for dy in range(kh):
                        iy = oy * stride + dy - pt
                        if not 0 <= iy < h:
                            continue
                        for dx in range(kw):
                            ix = ox * stride + dx - pl
                            if not 0 <= ix < wd:
                                continue
                            base = ((b * h + iy) * wd + ix) * c
                            wb = (dy * kw + dx) * ci * co
                            terms.extend(x[base + i] * w[wb + i * co + o] for i in range(c))
                    out.append(math.fsum(terms))
    return out, [n, oh, ow, co]


def xent_ref(logits, labels, rows, classes):
    losses, grad = [], []
    for r in range(rows):
        row = logits[r * classes:(r + 1) * classes]
        mx = max(row)
        s = math.fsum(math.exp(v - mx) for v in row)
        lse = mx + math.log(s)
        losses.append(lse - row[labels[r]])
        for c, v in enumerate(row):
            grad.append((math.exp(v - lse) - (1.0 if c == labels[r] else 0.0)) / rows)
    return math.fsum(losses) / rows, grad


def worst_error(got, want, rel, abs_tol, what):
    """The native tests' assert_close: every |got - want| <= abs + rel * max|want|."""
    if len(got) != len(want):
        return check(False, f"{what}: length {len(got)} != reference {len(want)}")
    scale = max((abs(v) for v in want), default=0.0)
    i, err = max(((i, abs(g - v)) for i, (g, v) in enumerate(zip(got, want))),
                 key=lambda t: t[1], default=(0, 0.0))
    bound = abs_tol + rel * scale
    ok = math.isfinite(err) and err <= bound
    return check(ok, f"{what}: worst error {err:.2e} at {i} (bound {bound:.2e})")


# ---------------------------------------------------------------- DevTools over a pipe
class Browser:
    def __init__(self, chromium, profile, log):
        cmd_r, self.cmd_w = os.pipe()
        self.resp_r, resp_w = os.pipe()

        def fds():  # Chromium reads commands on fd 3 and writes replies on fd 4
            hi_r, hi_w = os.dup(cmd_r), os.dup(resp_w)  # out of the way of 3 and 4 first
            os.dup2(hi_r, 3)
            os.dup2(hi_w, 4)

        args = [
            chromium, "--headless=new", "--no-sandbox", "--enable-unsafe-webgpu",
            "--remote-debugging-pipe", f"--user-data-dir={profile}", "--no-first-run",
            "--disable-gpu-sandbox", "--window-size=1000,1400", "about:blank",
        ]
        self.proc = subprocess.Popen(args, stdout=log, stderr=log, preexec_fn=fds,
                                     pass_fds=(3, 4))
        os.close(cmd_r)
        os.close(resp_w)
        self.buf = b""
        self.next_id = 0
        self.events = []

    def _read_message(self, deadline):
        while b"\0" not in self.buf:
            left = deadline - time.time()
            if left <= 0:
                raise TimeoutError("no reply from the browser in time")
            ready, _, _ = select.select([self.resp_r], [], [], min(left, 1.0))
            if ready:
                chunk = os.read(self.resp_r, 1 << 20)
                if not chunk:
                    raise RuntimeError("the browser closed the DevTools pipe")
                self.buf += chunk
            elif self.proc.poll() is not None:
                raise RuntimeError(f"the browser exited with {self.proc.returncode}")
        msg, self.buf = self.buf.split(b"\0", 1)
        return json.loads(msg)

    def send(self, method, params=None, session=None, timeout=60):
        self.next_id += 1
        mid = self.next_id
        msg = {"id": mid, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        data = json.dumps(msg).encode() + b"\0"
        while data:
            data = data[os.write(self.cmd_w, data):]
        deadline = time.time() + timeout
        while True:
            m = self._read_message(deadline)
            if m.get("id") == mid:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m["result"]
            self.on_event(m)

    def on_event(self, m):
        method = m.get("method", "")
        p = m.get("params", {})
        if method == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
            print(f"     console.{p.get('type')}: {text}")
        elif method == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            print(f"     page exception: {d.get('exception', {}).get('description', d.get('text'))}")
        self.events.append(m)

    def wait_event(self, method, timeout=60):
        deadline = time.time() + timeout
        for i, m in enumerate(self.events):
            if m.get("method") == method:
                del self.events[i]
                return m
        while True:
            m = self._read_message(deadline)
            if m.get("method") == method:
                return m
            self.on_event(m)

    def close(self):
        try:
            self.send("Browser.close", timeout=10)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class Page:
    def __init__(self, browser, url):
        self.b = browser
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.s = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        self.send("Runtime.enable")
        self.send("Page.enable")
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": 960, "height": 1240, "deviceScaleFactor": 1, "mobile": False})
        self.send("Page.navigate", {"url": url})
        self.b.wait_event("Page.loadEventFired", timeout=60)

    def send(self, method, params=None, timeout=60):
        return self.b.send(method, params, self.s, timeout)

    def eval(self, expr, timeout=120):
        """Awaits the value of an async JS expression (JSON-able), or raises its error."""
        r = self.send("Runtime.evaluate", {
            "expression": f"(async () => {{ {expr} }})()",
            "awaitPromise": True, "returnByValue": True,
        }, timeout)
        if "exceptionDetails" in r:
            d = r["exceptionDetails"]
            raise RuntimeError(d.get("exception", {}).get("description", d.get("text")))
        return r["result"].get("value")

    def rejects(self, expr, timeout=60):
        """The message of the error an async JS expression rejects with, or None."""
        return self.eval(f"try {{ {expr}; return null; }} catch (e) {{ return String(e.message || e); }}",
                         timeout)


# ---------------------------------------------------------------- the tests
DROPOUT_CASES = [  # (length, rate, seed, offset)
    (1, 0.5, 0, 0),
    (3, 0.5, 42, 7),
    (7, 0.2, 2**32, 1),
    (33, 0.5, 2**32 + 5, 2**32 + 3),
    (257, 0.1, 2**63 + 12345, 99),
    (1001, 0.9, 2**64 - 1, 2**64 - 1),
    (4099, 0.5, 123456789012345, 0),
    (250, 0.0, 7, 3),
    (250, 1.0, 7, 3),
    (513, 1e-7, 5, 5),
    (515, 0.999, 2**40, 2**33),
    (10007, 0.3, 0xDEADBEEFCAFEBABE, 12),
]


def test_dropout(page):
    for n, p, seed, offset in DROPOUT_CASES:
        what = f"dropout n={n} p={p} seed={seed} offset={offset}"
        r = page.eval(f"""
            const n = {n}, p = {p!r}, seed = {seed}n, offset = {offset}n;
            const x = new Float32Array(n), dy = new Float32Array(n);
            for (let i = 0; i < n; i++) {{ x[i] = ((i % 97) - 48.5) * 0.37; dy[i] = ((i % 89) + 0.25) * -1.3; }}
            const bits = (a) => Array.from(new Uint32Array(a.buffer, a.byteOffset, a.length));
            const y = await wgnn.dropout(x, p, seed, offset);
            const dx = await wgnn.dropoutBackward(dy, p, seed, offset);
            const hy = await wgnn.hostDropout(x, p, seed, offset);
            const hdx = await wgnn.hostDropout(dy, p, seed, offset);
            const keep = await wgnn.hostKeep(n, p, seed, offset);
            return {{ y: bits(y), dx: bits(dx), hy: bits(hy), hdx: bits(hdx),
                     keep: Array.from(keep), n: y.length }};
        """)
        want = keep_mask(n, p, seed, offset)
        fwd = [1 if v != 0 else 0 for v in r["y"]]
        bwd = [1 if v != 0 else 0 for v in r["dx"]]
        ok = (r["n"] == n and r["y"] == r["hy"] and r["dx"] == r["hdx"]
              and r["keep"] == want and fwd == want and bwd == want)
        if not ok:
            diff = next((i for i in range(n) if fwd[i] != want[i] or r["y"][i] != r["hy"][i]), None)
            what += f" (first difference at element {diff})"
        check(ok, f"{what}: {sum(want)} of {n} kept, forward and backward bit-identical to the host")


def rand_f32(rng, count, lo=-1.0, hi=1.0):
    return [f32(rng.uniform(lo, hi)) for _ in range(count)]


def test_matmul(page, rng):
    for m, k, n in [(1, 1, 1), (3, 7, 1), (7, 33, 3), (33, 1, 257), (5, 257, 129), (64, 64, 64)]:
        a, b = rand_f32(rng, m * k), rand_f32(rng, k * n)
        got = page.eval(f"""
            const c = await wgnn.matmul(Float32Array.from({json.dumps(a)}), Float32Array.from({json.dumps(b)}), {m}, {k}, {n});
            return Array.from(c);
        """)
        worst_error(got, matmul_ref(a, b, m, k, n), 1e-5, 0.0, f"matmul {m}x{k}x{n}")


def test_conv2d(page, rng):
    cases = [
        ([1, 7, 7, 3], [3, 3, 3, 5], 1, "same"),
        ([2, 9, 8, 4], [3, 2, 4, 7], 2, "valid"),
        ([1, 5, 5, 1], [5, 5, 1, 3], 1, "valid"),
        ([3, 11, 13, 2], [3, 3, 2, 33], 2, "same"),
        ([1, 1, 1, 1], [1, 1, 1, 1], 1, "same"),
    ]
    for xs, ws, stride, padding in cases:
        x, w = rand_f32(rng, math.prod(xs)), rand_f32(rng, math.prod(ws))
        r = page.eval(f"""
            const r = await wgnn.conv2d(Float32Array.from({json.dumps(x)}), {xs}, Float32Array.from({json.dumps(w)}), {ws},
                                        {{ stride: {stride}, padding: '{padding}' }});
            return {{ data: Array.from(r.data), shape: Array.from(r.shape) }};
        """)
        want, shape = conv2d_ref(x, xs, w, ws, stride, padding)
        what = f"conv2d x{xs} w{ws} stride {stride} {padding}"
        if check(r["shape"] == shape, f"{what}: shape {r['shape']}"):
            worst_error(r["data"], want, 1e-5, 0.0, what)


def test_softmax_xent(page, rng):
    cases = [(1, 1, 1.0), (3, 7, 3.0), (33, 10, 5.0), (257, 3, 2.0), (7, 5, 90.0)]
    for rows, classes, spread in cases:
        logits = rand_f32(rng, rows * classes, -spread, spread)
        labels = [rng.randrange(classes) for _ in range(rows)]
        r = page.eval(f"""
            const r = await wgnn.softmaxXent(Float32Array.from({json.dumps(logits)}), {labels}, {rows}, {classes});
            return {{ loss: r.loss, dlogits: Array.from(r.dlogits) }};
        """)
        want_loss, want_grad = xent_ref(logits, labels, rows, classes)
        what = f"softmax_cross_entropy {rows}x{classes} logits within ±{spread}"
        worst_error([r["loss"]], [want_loss], 1e-5, 1e-6, f"{what}: loss")
        worst_error(r["dlogits"], want_grad, 1e-5, 1e-5 / rows, f"{what}: dlogits")


def test_errors(page):
    cases = [
        ("wgnn.dropout(new Float32Array(4), 1.5, 1n, 0n)", "dropout"),
        ("wgnn.dropout(new Float32Array(4), 0.5, 1, 0n)", "seed must be a bigint"),
        ("wgnn.dropout(new Float32Array(4), 0.5, -1n, 0n)", "outside 0 ..= 2^64 - 1"),
        ("wgnn.matmul(new Float32Array(6), new Float32Array(5), 2, 3, 2)", "5 values do not fill shape [3, 2]"),
        ("wgnn.softmaxXent(new Float32Array([0, 1, 2, 3]), [1, 7], 2, 2)",
         "label 7 at row 1 is out of range for 2 classes"),
        ("wgnn.conv2d(new Float32Array(4), [1, 2, 2, 1], new Float32Array(9), [3, 3, 1, 1], { padding: 'valid' })",
         "conv2d"),
    ]
    for expr, want in cases:
        msg = page.rejects(f"await {expr}")
        check(msg is not None and want in msg, f"rejects {expr}: {msg!r}")


def read_safetensors(blob):
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    meta = header.pop("__metadata__", {})
    tensors = {}
    for name, t in header.items():
        lo, hi = t["data_offsets"]
        raw = blob[8 + n + lo:8 + n + hi]
        count = math.prod(t["shape"])
        if t["dtype"] != "F32" or len(raw) != 4 * count:
            raise ValueError(f"{name}: {t['dtype']} {t['shape']} with {len(raw)} bytes")
        tensors[name] = (t["shape"], struct.unpack(f"<{count}f", raw))
    return tensors, meta


def demo_matmul_shapes():
    """The matmul shapes (transpose a, transpose b, m, n, k) of the demo's plans, from its
    structure: 784-256-256-10 trained in batches of 64 over 2,000 images (31 of 64, one of
    16), each layer's forward and weight gradient and, above the first, its input gradient;
    then evaluated in batches of 250 over 500 test images and 24 images predicted (forward)."""
    sizes = [784, 256, 256, 10]
    shapes = set()
    for batch in (64, 2000 % 64):
        for i, (k, n) in enumerate(zip(sizes, sizes[1:])):
            shapes.add((False, False, batch, n, k))  # x W
            shapes.add((True, False, k, n, batch))   # x^T dy
            if i > 0:
                shapes.add((False, True, batch, k, n))  # dy W^T
    for batch in (250, 24):
        for k, n in zip(sizes, sizes[1:]):
            shapes.add((False, False, batch, n, k))
    return shapes


def test_tuning(page, info):
    """The autotuner in the browser: with `timestamp-query` it timed every matmul shape of the
    demo's plans from GPU timestamps and never blocked (there is no clock to wait on); the
    tuned variants still compute the product (an eager matmul of a tuned shape against the
    f64 reference)."""
    stats = page.eval("return await wgnn.stats();")
    want = len(demo_matmul_shapes())
    print(f"     counters: {stats}")
    has = "TIMESTAMP_QUERY" in info["features"]
    check(has == ("timestamp-query" in info.get("browser", {}).get("features", [])),
          f"wgnn sees timestamp-query as the browser does ({has})")
    if has:
        check(stats["tunedByTimestamps"] == want,
              f"autotuner: {stats['tunedByTimestamps']} matmul shapes timed from GPU timestamps, "
              f"of the demo's {want}")
    else:
        check(stats["tunedByTimestamps"] == 0,
              "autotuner: no timestamp-query, the static choice kept")
    check(stats["tunedByClock"] == 0 and stats["blockingWaits"] == 0,
          f"autotuner: nothing timed by a clock, no blocking wait ({stats['tunedByClock']}, "
          f"{stats['blockingWaits']})")
    rng = random.Random(7)
    m, k, n = 64, 256, 10  # the last layer's forward, tuned during training
    a, b = rand_f32(rng, m * k), rand_f32(rng, k * n)
    got = page.eval(f"""
        const c = await wgnn.matmul(Float32Array.from({json.dumps(a)}), Float32Array.from({json.dumps(b)}), {m}, {k}, {n});
        return Array.from(c);
    """)
    worst_error(got, matmul_ref(a, b, m, k, n), 1e-5, 0.0, f"matmul {m}x{k}x{n} (a tuned shape)")


def test_train(page, epochs, screenshot, embed, info):
    r = page.eval(f"""
        const r = await wgnn.train({{ epochs: {epochs}, onEpoch: (e) => console.log(
            `epoch ${{e.epoch}}: loss ${{e.loss.toFixed(4)}} accuracy ${{e.accuracy.toFixed(4)}} ` +
            `test accuracy ${{e.testAccuracy.toFixed(4)}} (${{e.seconds.toFixed(2)}} s)`) }});
        let s = '';
        for (let i = 0; i < r.weights.length; i += 32768) s += String.fromCharCode(...r.weights.subarray(i, i + 32768));
        const grid = Array.from(document.querySelectorAll('#grid .pred')).map((e) => e.textContent);
        return {{ testAccuracy: r.testAccuracy, secondsPerEpoch: r.secondsPerEpoch, epochs: r.epochs,
                 weights: btoa(s), grid, download: document.getElementById('download').download }};
    """, timeout=900)
    secs = [e["seconds"] for e in r["epochs"]]
    print(f"     seconds per epoch in the browser: {', '.join(f'{s:.2f}' for s in secs)} "
          f"(after the first, which compiles the shaders: {r['secondsPerEpoch']:.2f} s per epoch)")
    check(len(r["epochs"]) == epochs, f"train: {len(r['epochs'])} epoch records")
    check(r["testAccuracy"] >= 0.70, f"train: test accuracy {r['testAccuracy']:.4f} >= 0.70 after {epochs} epochs")
    check(len(r["grid"]) == 24, f"train: the page shows {len(r['grid'])} predicted test images")
    test_tuning(page, info)
    # The download: safetensors that numpy and embed --weights read.
    blob = base64.b64decode(r["weights"])
    tensors, meta = read_safetensors(blob)
    want = {"dense/kernel": [784, 256], "dense/bias": [256], "dense_1/kernel": [256, 256],
            "dense_1/bias": [256], "dense_2/kernel": [256, 10], "dense_2/bias": [10]}
    shapes = {k: v[0] for k, v in tensors.items()}
    check(shapes == want, f"download: {len(blob)} bytes of safetensors, tensors {shapes}")
    check(all(math.isfinite(v) for _, d in tensors.values() for v in d), "download: every weight is finite")
    check(meta.get("test_accuracy") is not None, f"download: metadata {meta}")
    try:
        import numpy  # noqa: F401  (optional: the format check above needs only the standard library)
        (n,) = struct.unpack("<Q", blob[:8])
        hdr = json.loads(blob[8:8 + n])
        lo, hi = hdr["dense/kernel"]["data_offsets"]
        k = numpy.frombuffer(blob[8 + n + lo:8 + n + hi], dtype="<f4").reshape(784, 256)
        check(bool(numpy.all(numpy.isfinite(k))), "download: numpy reads dense/kernel as 784 x 256 float32")
    except ImportError:
        print("skip numpy's read of the download: numpy is not installed")
    if screenshot:
        shot = page.send("Page.captureScreenshot", {"format": "png"})
        os.makedirs(os.path.dirname(screenshot), exist_ok=True)
        with open(screenshot, "wb") as f:
            f.write(base64.b64decode(shot["data"]))
        print(f"     screenshot: {os.path.relpath(screenshot, ROOT)}")
    if embed:
        with tempfile.NamedTemporaryFile(suffix=".safetensors", delete=False) as f:
            f.write(blob)
            path = f.name
        try:
            out = subprocess.run(
                ["cargo", "run", "--release", "--quiet", "--example", "embed", "--",
                 "--weights", path, "--images", "24"],
                cwd=ROOT, capture_output=True, text=True, timeout=900)
        finally:
            os.unlink(path)
        native = [line[22:35].strip() for line in out.stdout.splitlines()
                  if len(line) > 35 and line[:6].strip().isdigit()]
        if not check(out.returncode == 0 and "weights loaded from" in out.stdout,
                     "embed --weights reads the download (native)"):
            print(out.stdout[-3000:], out.stderr[-3000:])
        same = sum(a == b for a, b in zip(native, r["grid"]))
        check(len(native) == 24 and same >= 23,
              f"embed's native predictions agree with the browser's on {same} of 24 test images")


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def serve(directory):
    handler = functools.partial(QuietHandler, directory=directory)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--screenshot", default=os.path.join(ROOT, "docs", "web_demo.png"),
                    help="where to save the page after training ('' for none)")
    ap.add_argument("--embed", action="store_true",
                    help="also load the downloaded weights with the native embed example")
    args = ap.parse_args()
    if not os.path.exists(os.path.join(DIST, "index.html")):
        raise SystemExit("web/dist/ is not built: bash web/build.sh")
    philox_self_test()
    server = serve(DIST)
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    profile = tempfile.mkdtemp(prefix="wgnn-chromium-")
    log = open(os.path.join(profile, "chromium.log"), "w+")
    browser = Browser(args.chromium, profile, log)
    started = time.time()
    try:
        version = browser.send("Browser.getVersion")
        print(f"browser: {version['product']}; page {url}")
        page = Page(browser, url)
        info = page.eval("return await window.wgnnReady;", timeout=180)
        b = info.get("browser", {})
        print(f"adapter (wgnn): {info['name']} ({info['backend']}, {info['deviceType']}); "
              f"features {', '.join(info['features']) or 'none'}; "
              f"max storage binding {info['maxStorageBufferBindingSize']} bytes")
        print(f"adapter (browser): vendor {b.get('vendor')}, architecture {b.get('architecture')}, "
              f"subgroups {b.get('subgroupMinSize')}..{b.get('subgroupMaxSize')} lanes; "
              f"features {', '.join(b.get('features', []))}")
        print(f"data: {info['data']['train']} training and {info['data']['test']} test images")
        rng = random.Random(15)
        t = time.time()
        test_dropout(page)
        test_matmul(page, rng)
        test_conv2d(page, rng)
        test_softmax_xent(page, rng)
        test_errors(page)
        print(f"     kernel checks: {time.time() - t:.1f} s")
        test_train(page, args.epochs, args.screenshot, args.embed, info)
    except Exception as e:  # a broken page or browser is a failure, with the browser's log
        FAILURES.append(f"{type(e).__name__}: {e}")
        print(f"FAIL {type(e).__name__}: {e}")
        log.seek(0)
        print("chromium's log (tail):\n" + "".join(log.readlines()[-40:]))
    finally:
        browser.close()
        server.shutdown()
        shutil.rmtree(profile, ignore_errors=True)
    print(f"browser tests: {len(FAILURES)} failed, {time.time() - started:.1f} s")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
