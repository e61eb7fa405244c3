"""Before/after figures for red-team items 3, 4 and 5, under the same load, against any authd
binary (old and new). Usage: measure.py AUTHD_BINARY {old|new}"""
import json, os, socket, subprocess, sys, tempfile, threading, time, urllib.request, concurrent.futures as cf

BIN, KIND = sys.argv[1], sys.argv[2]

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def start(extra_server="", strategy_extra=""):
    d = tempfile.mkdtemp()
    port = free_port(); aport = free_port()
    tok = os.urandom(32).hex()
    open(f"{d}/admin.token", "w").write(tok)
    admin = f'[admin]\nlisten = "127.0.0.1:{aport}"\ntoken_file = "{d}/admin.token"\n' if KIND == "new" else ""
    cfg = f"""version = 1
[server]
listen = "127.0.0.1:{port}"
{extra_server}
[store]
path = "{d}/authd.redb"
{admin}
[resources.user]
attributes.email = {{ type = "ci_string", unique = true }}
[resources.user.strategies.password]
type = "password"
identity_field = "email"
{strategy_extra}
"""
    open(f"{d}/c.toml", "w").write(cfg)
    p = subprocess.Popen([BIN, "serve", "--config", f"{d}/c.toml"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "RUST_LOG": "error"})
    for _ in range(100):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1); break
        except Exception:
            time.sleep(0.05)
    return p, port, aport, tok

def post(port, path, body, timeout=30):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(), headers={"content-type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except (ConnectionError, OSError):
        return "closed"

def completed(port, aport, tok):
    if KIND == "new":
        req = urllib.request.Request(f"http://127.0.0.1:{aport}/admin/status", headers={"authorization": f"Bearer {tok}"})
    else:
        req = urllib.request.Request(f"http://127.0.0.1:{port}/healthz")
    return json.load(urllib.request.urlopen(req))["hash_pool"]["completed"]

reg = lambda e, pw: {"email": e, "password": pw, "password_confirmation": pw}

# Item 3: 59 wrong guesses and the right password, 60 at once, hash_queue = 1000,
# identity_failures = 10 (default argon2id OWASP parameters).
p, port, aport, tok = start("hash_queue = 1000", 'rate_limit = { identity_failures = 10, ip_failures = 100000, window = "1h" }')
post(port, "/auth/user/password/register", reg("ada@example.com", "correct horse"))
before = completed(port, aport, tok)
bodies = [{"email": "ada@example.com", "password": "wrong horse"}] * 59 + [{"email": "ada@example.com", "password": "correct horse"}]
with cf.ThreadPoolExecutor(60) as ex:
    statuses = list(ex.map(lambda b: post(port, "/auth/user/password/sign_in", b), bodies))
verified = completed(port, aport, tok) - before
print(f"item3 {KIND}: verifications={verified} for a limit of 10; right password (last of 60) -> {statuses[-1]}; 429s={statuses.count(429)} 401s={statuses.count(401)} 200s={statuses.count(200)}")
p.terminate(); p.wait()

# Item 4: a flood re-registering a taken identity (64 concurrent, 10 s) while another client
# signs in (1 at a time); share of the legitimate sign-ins answered 503.
p, port, aport, tok = start()
post(port, "/auth/user/password/register", reg("taken@example.com", "correct horse"))
post(port, "/auth/user/password/register", reg("legit@example.com", "correct horse"))
stop = time.time() + 10
flood = {"n": 0, "codes": {}}
def flooder():
    while time.time() < stop:
        c = post(port, "/auth/user/password/register", reg("taken@example.com", "another horse"))
        flood["n"] += 1; flood["codes"][c] = flood["codes"].get(c, 0) + 1
threads = [threading.Thread(target=flooder) for _ in range(64)]
for t in threads: t.start()
legit = {}
import http.client
while time.time() < stop:
    # The legitimate client is another address (127.0.0.2) than the flood's.
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30, source_address=("127.0.0.2", 0))
        conn.request("POST", "/auth/user/password/sign_in", body=json.dumps({"email": "legit@example.com", "password": "correct horse"}), headers={"content-type": "application/json"})
        c = conn.getresponse().status
        conn.close()
    except OSError:
        c = "closed"
    legit[c] = legit.get(c, 0) + 1
for t in threads: t.join()
total = sum(legit.values())
print(f"item4 {KIND}: legitimate sign-ins {legit} -> {100.0*legit.get(503,0)/max(total,1):.1f}% 503; flood {flood['n']} requests {flood['codes']}")
p.terminate(); p.wait()

# Item 5: one client (127.0.0.1) opens max_connections = 256 idle connections; then another
# client (127.0.0.2) asks /healthz: how long it waits.
p, port, aport, tok = start("max_connections = 256")
idle = []
for _ in range(256):
    s = socket.socket(); s.connect(("127.0.0.1", port)); idle.append(s)
time.sleep(0.3)
c = socket.socket(); c.bind(("127.0.0.2", 0)); c.settimeout(30)
t0 = time.time(); c.connect(("127.0.0.1", port))
c.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
data = b""
try:
    while True:
        chunk = c.recv(4096)
        if not chunk: break
        data += chunk
except socket.timeout:
    pass
waited = time.time() - t0
print(f"item5 {KIND}: legitimate request answered {data[:12]!r} after {waited*1000:.0f} ms while one address held 256 idle connections")
for s in idle: s.close()
p.terminate(); p.wait()
