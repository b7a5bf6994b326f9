"""The retrieval service (deploy/serving/app.py) over real HTTP: a server subprocess on 127.0.0.1 with a
free port, queried with urllib; the web page in headless Chromium (skipped when it is not installed:
bash scripts/install_browser.sh).

SERVING_SCREENSHOT=deploy/serving/screenshot.png pytest -s tests/test_serving.py -k browser  # README picture
"""
import io
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
import zlib

import pytest

from tests.helpers import ROOT, lite_flags, run_cli

APP = os.path.join(ROOT, "deploy", "serving", "app.py")
pytestmark = pytest.mark.slow


# ------------------------------------------------------------------------------------------ helpers
def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """deploy/serving/app.py as a subprocess; output goes to a log file (never a pipe that could fill)."""

    def __init__(self, args, log_path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.log = open(log_path, "w")  # noqa: SIM115 - open while the server runs; closed by stop()
        env = dict(os.environ, FLAGS_use_mkldnn="0", PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen([sys.executable, APP, *map(str, args), "--host", "127.0.0.1",
                                      "--port", str(self.port)], cwd=ROOT, env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT)

    def output(self):
        with open(self.log_path) as f:
            return f.read()

    def wait_ready(self, timeout=120):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.output()[-4000:]}")
            try:
                status, body, _ = request(self.url + "/health", timeout=2)
                if status == 200:
                    return json.loads(body)
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"server not ready after {timeout} s:\n{self.output()[-4000:]}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()


def start(request_, args, log_path):
    """Start a server, register its termination with the fixture's finalizer, wait for /health."""
    server = Server(args, log_path)
    request_.addfinalizer(server.stop)
    server.health = server.wait_ready()
    return server


def request(url, data=None, headers=None, timeout=30):
    """→ (status, body bytes, headers); HTTP errors are returned, not raised."""
    req = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read(), resp.headers
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers


def multipart(files=None, fields=None):
    """(body, headers) of a multipart/form-data request. files: {field: (filename, bytes)}."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in (fields or {}).items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, (filename, content) in (files or {}).items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                     f'Content-Type: application/octet-stream\r\n\r\n'.encode() + content + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def search(server, content, filename="query.jpg", k=None, query=""):
    body, headers = multipart({"image": (filename, content)}, {"k": k} if k is not None else None)
    status, raw, _ = request(server.url + "/search" + query, body, headers)
    return status, json.loads(raw)


def png_header_only(width, height):
    """A PNG that declares width x height but carries almost no data: a decompression-bomb header."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


# ------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def trained(lite_single, tmp_path_factory):
    """A 1-epoch 16-bit OrthoHash run on lite data (its codes already spread over several distances), exported."""
    out = tmp_path_factory.mktemp("serving")
    run_cli(["main_single_gpu.py", *lite_flags(lite_single, "orthohash", out / "run", epochs=1)])
    run_cli(["export_model.py", "--pretrained", out / "run" / "best.pdparams", "--output-dir", out / "inf", "--onnx"])
    with open(os.path.join(lite_single["list_dir"], "database.txt")) as f:
        rows = [line.split() for line in f if line.strip()]
    database = [(p, [i for i, v in enumerate(labels) if v == "1"]) for p, *labels in rows]
    return {"out": out, "data": lite_single, "database": database}


def db_bytes(trained, i):
    with open(os.path.join(trained["data"]["root"], trained["database"][i][0]), "rb") as f:
        return f.read()


@pytest.fixture(scope="module")
def server(trained, request):
    """The exported model in Paddle Inference; the code cache is built at start (fresh --save_path)."""
    d = trained["data"]
    return start(request, ["--model-dir", trained["out"] / "inf", "--data_path", d["root"], "--list-dir",
                           d["list_dir"], "--save_path", trained["out"] / "cache", "--max-pixels", 4_000_000],
                 trained["out"] / "server.log")


@pytest.fixture(scope="module")
def small_server(trained, server, request):
    """The checkpoint (dygraph) with a 0.01 MB upload cap, reusing the cache the first server wrote."""
    d = trained["data"]
    return start(request, ["--pretrained", trained["out"] / "run" / "best.pdparams", "--data_path", d["root"],
                           "--list-dir", d["list_dir"], "--save_path", trained["out"] / "cache",
                           "--max-upload-mb", 0.01], trained["out"] / "small_server.log")


# ------------------------------------------------------------------------------------------ API
def test_health_and_cache_built_at_start(server, trained):
    h = server.health
    assert h["status"] == "ok" and h["bits"] == 16 and h["database_size"] == len(trained["database"])
    assert h["model"] == str(trained["out"] / "inf") and h["runtime"] == "paddle"
    log = server.output()
    assert "Encoding the database (48 images)" in log and "Save code of database" in log


def test_database_image_comes_back_at_distance_zero(server, trained):
    i = 5
    n = len(trained["database"])
    status, out = search(server, db_bytes(trained, i), k=n)  # all of it, so every distance-0 tie is listed
    assert status == 200, out
    assert out["bits"] == 16 and len(out["code"]) == 4 and int(out["code"], 16) >= 0
    results = out["results"]
    assert [r["rank"] for r in results] == list(range(1, n + 1))
    assert results[0]["distance"] == 0
    assert i in [r["id"] for r in results if r["distance"] == 0]
    keys = [(r["distance"], r["id"]) for r in results]
    assert keys == sorted(keys) and sorted(r["id"] for r in results) == list(range(n))
    for r in results:
        assert set(r) == {"rank", "distance", "id", "path", "labels"}  # no `index` any more (README)
        assert (r["path"], r["labels"]) == tuple(trained["database"][r["id"]])


def test_k_default_query_parameter_and_bounds(server, trained):
    img = db_bytes(trained, 0)
    assert len(search(server, img)[1]["results"]) == 10
    assert len(search(server, img, query="?k=3")[1]["results"]) == 3
    for bad in ("0", "101", "ten", "2.5"):
        status, out = search(server, img, k=bad)
        assert status == 400 and "k must be" in out["error"], (bad, out)


def test_non_image_upload_is_400(server):
    status, out = search(server, b"this is a text file, not an image\n" * 20, filename="notes.txt")
    assert status == 400 and "notes.txt" in out["error"] and "not an image" in out["error"]
    status, out = search(server, b"", filename="empty.jpg")
    assert status == 400 and "empty" in out["error"]
    body, headers = multipart(fields={"k": 3})
    status, raw, _ = request(server.url + "/search", body, headers)
    assert status == 400 and "field 'image'" in json.loads(raw)["error"]


def test_too_many_pixels_and_decompression_bomb_are_400(server):
    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (2500, 2000)).save(buf, "PNG")  # 5 MP > --max-pixels 4 MP, a small file
    status, out = search(server, buf.getvalue(), filename="wide.png")
    assert status == 400 and "5000000 pixels" in out["error"], out
    status, out = search(server, png_header_only(100_000, 100_000), filename="bomb.png")
    assert status == 400 and "decompression bomb" in out["error"], out


def test_oversized_upload_is_413_and_small_one_passes(small_server, trained):
    assert small_server.health["runtime"] == "dygraph"
    assert "Load code of database" in small_server.output()  # the cache written by the exported model
    big = os.urandom(50_000)  # > 0.01 MB
    status, out = search(small_server, big, filename="big.jpg")
    assert status == 413 and "too large" in out["error"] and "0.01 MB" in out["error"], out
    img = db_bytes(trained, 7)
    assert len(img) < 0.01 * 1024 * 1024 - 1000
    status, out = search(small_server, img, k=48)
    assert status == 200 and 7 in [r["id"] for r in out["results"] if r["distance"] == 0]
    # a body far over the limit (more than 1 MB beyond it) is refused by the server from its headers alone,
    # before the app sees it or the body is sent
    with socket.create_connection(("127.0.0.1", small_server.port), timeout=30) as sock:
        sock.sendall(b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                     b"Content-Length: 50000000\r\n\r\n")
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"application/json" not in answer.split(b"\r\n\r\n")[0]  # the server's answer, not the app's
    assert small_server.proc.poll() is None


def test_image_endpoint(server, trained):
    from PIL import Image

    n = len(trained["database"])
    for bad in (str(n), "-1", "abc", "1.0", "99999999999999999999"):
        status, raw, headers = request(f"{server.url}/image/{bad}")
        assert status == 404 and headers["Content-Type"] == "application/json", bad
        assert "list position" in json.loads(raw)["error"]
    status, raw, headers = request(f"{server.url}/image/{n - 1}")
    assert status == 200 and headers["Content-Type"] == "image/jpeg"
    img = Image.open(io.BytesIO(raw))
    assert img.format == "JPEG" and max(img.size) <= 256
    img.load()


def test_page_and_assets_are_local(server):
    status, html, headers = request(server.url + "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b'id="results"' in html and b'type="file"' in html
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    for asset in ("/static/app.js", "/static/style.css"):
        status, body, _ = request(server.url + asset)
        assert status == 200
        html += body
    assert b"http://" not in html and b"https://" not in html and b"//cdn" not in html  # no CDN, no web fonts
    status, raw, _ = request(server.url + "/no/such/page")
    assert status == 404 and "error" in json.loads(raw)


def test_load_200_requests_8_threads(server, trained):
    n_requests, n_threads = 200, 8
    images = [db_bytes(trained, i) for i in range(len(trained["database"]))]
    errors, latencies, lock = [], [], threading.Lock()
    counter = iter(range(n_requests))

    def worker():
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            t0 = time.perf_counter()
            try:
                status, out = search(server, images[i % len(images)], k=10)
                ok = status == 200 and len(out["results"]) == 10 and out["results"][0]["distance"] == 0
            except Exception as exc:  # noqa: BLE001 - every failure counts as an error
                ok, out = False, repr(exc)
            with lock:
                latencies.append(time.perf_counter() - t0)
                if not ok:
                    errors.append(out)

    threads = [threading.Thread(target=worker) for _ in range(n_threads)]
    start_time = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    elapsed = time.perf_counter() - start_time
    latencies.sort()
    print(f"\nload test: {n_requests} POST /search, {n_threads} threads: {n_requests / elapsed:.1f} requests/s, "
          f"p50 {1000 * latencies[len(latencies) // 2]:.1f} ms, "
          f"p95 {1000 * latencies[int(0.95 * len(latencies))]:.1f} ms, "
          f"{len(errors)} errors")
    assert not errors, errors[:3]
    assert len(latencies) == n_requests
    assert request(server.url + "/health")[0] == 200


# ------------------------------------------------------------------------------------------ browser
def _browser():
    """(chromium binary, chromedriver) or a skip with the reason."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        pytest.skip("selenium is not installed (bash scripts/install_browser.sh)")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.skip("chromium / chromedriver not found (bash scripts/install_browser.sh, as root)")
    return chromium, driver


def test_page_in_headless_chromium(server, trained, tmp_path):
    chromium, driver_path = _browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as ChromeService
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'chromium-profile'}",
                 "--window-size=1280,960"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=ChromeService(executable_path=driver_path, log_output=str(tmp_path / "cd.log")),
                              options=options)
    try:
        k = 12
        driver.get(server.url + "/")
        WebDriverWait(driver, 20).until(lambda d: "16-bit" in d.find_element(By.ID, "model-info").text)
        k_input = driver.find_element(By.ID, "k-input")
        k_input.clear()
        k_input.send_keys(str(k))
        query = os.path.join(trained["data"]["root"], trained["database"][5][0])
        driver.find_element(By.ID, "file-input").send_keys(query)  # the page searches on change

        def loaded(d):
            return d.execute_script(
                "const imgs = document.querySelectorAll('#results img');"
                "return Array.from(imgs).filter(i => i.complete && i.naturalWidth > 0).length;")

        WebDriverWait(driver, 30).until(lambda d: loaded(d) >= k)
        assert len(driver.find_elements(By.CSS_SELECTOR, "#results img")) == k
        assert loaded(driver) == k
        captions = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#results figcaption")]
        assert captions[0].startswith("#1 · Hamming 0"), captions[0]
        assert "distance 0" in driver.find_element(By.ID, "status").text
        assert driver.find_element(By.ID, "query-preview").get_property("naturalWidth") > 0
        shot = tmp_path / "screenshot.png"
        driver.save_screenshot(str(shot))
        if os.environ.get("SERVING_SCREENSHOT"):
            shutil.copyfile(shot, os.environ["SERVING_SCREENSHOT"])
        # an error is shown on the page, not thrown away
        bad = tmp_path / "notes.txt"
        bad.write_text("not an image")
        driver.find_element(By.ID, "file-input").send_keys(str(bad))
        WebDriverWait(driver, 20).until(lambda d: "not an image" in d.find_element(By.ID, "status").text)
        assert not driver.find_elements(By.CSS_SELECTOR, "#results img")
    finally:
        driver.quit()


# ------------------------------------------------------------------------------------------ the server
SERVER_SCRIPT = r"""
import sys, time
sys.path.insert(0, {root!r})
from utils.deploy.server import graceful_stop, serve
from utils.errors import cli_entry


def app(environ, start_response):
    if environ["PATH_INFO"] == "/slow":
        time.sleep(float(environ["QUERY_STRING"]))
    body = environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok %d" % len(body)]


def main():
    how = serve(app, "127.0.0.1", int(sys.argv[1]), 2, 1000, graceful_stop().install(), float(sys.argv[2]))
    print("stopped by", how, flush=True)
    return 0


sys.exit(cli_entry(main)())
"""


def tiny_server(tmp_path, drain):
    """utils.deploy.server.serve of a tiny WSGI app (no model), 2 threads, bodies up to 1000 bytes."""
    script = tmp_path / "tiny_server.py"
    script.write_text(SERVER_SCRIPT.format(root=ROOT))
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(script), str(port), str(drain)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            assert proc.poll() is None and time.time() < deadline, proc.stdout.read()
            time.sleep(0.1)


def in_thread(url, out):
    def run():
        try:
            out.append(request(url, timeout=30)[:2])
        except OSError as exc:
            out.append(type(exc).__name__)

    t = threading.Thread(target=run)
    t.start()
    time.sleep(0.5)  # the request is in the app now
    return t


def test_server_drains_then_stops_and_refuses_big_bodies_before_the_app(tmp_path):
    """The public stop: the first SIGTERM refuses new connections, the request in flight is answered, exit 0.
    A body over the limit gets the server's 413 (the app would have answered 200 with its length)."""
    proc, url = tiny_server(tmp_path, drain=10)
    try:
        assert request(url + "/", data=b"x" * 500)[:2] == (200, b"ok 500")
        status, body, _ = request(url + "/", data=b"x" * 5000)
        assert status == 413 and b"ok" not in body
        got = []
        t = in_thread(url + "/slow?4", got)
        proc.send_signal(signal.SIGTERM)
        time.sleep(1.5)  # cheroot's stop() ends its accept loop within half a second
        with pytest.raises(OSError):
            request(url + "/", timeout=2)
        t.join(30)
        assert got == [(200, b"ok 0")] and proc.wait(30) == 0
    finally:
        proc.kill()
    out = proc.stdout.read()
    assert out.strip().splitlines()[-1] == "stopped by SIGTERM" and "Traceback" not in out


def test_server_drain_is_bounded_and_a_second_signal_aborts(tmp_path):
    proc, url = tiny_server(tmp_path, drain=1)
    got = []
    t = in_thread(url + "/slow?20", got)
    start = time.time()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0 and time.time() - start < 8  # 1 s of drain + the grace, not the 20 s request
    t.join(30)
    assert got and got[0] != (200, b"ok 0")
    assert "were cut" in proc.stdout.read()
    proc, url = tiny_server(tmp_path, drain=30)
    got = []
    t = in_thread(url + "/slow?20", got)
    start = time.time()
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(30) == 130 and time.time() - start < 8
    t.join(30)
    assert "interrupted" in proc.stdout.read() and got[0] != (200, b"ok 0")
