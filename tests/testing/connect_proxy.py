#!/usr/bin/python3
"""A minimal HTTP CONNECT proxy for tests (stdlib only), on 127.0.0.1.

Prints "LISTENING 127.0.0.1:PORT" on stdout once bound, then one line
"CONNECT host:port" on stderr per tunnel it opens. Only CONNECT is supported
(what libcurl uses for https:// through a proxy); anything else gets 405.
With `--credentials FILE` (one line "user:password") a CONNECT must carry
"Proxy-Authorization: Basic <base64(user:password)>"; one without it, or
with other credentials, gets 407 and a line "REFUSED host:port" on stderr.
Stops on SIGTERM.
"""
import base64
import select
import signal
import socket
import sys
import threading


def relay(a, b):
    socks = [a, b]
    try:
        while True:
            readable, _, _ = select.select(socks, [], [], 30)
            if not readable:
                return
            for s in readable:
                data = s.recv(65536)
                if not data:
                    return
                (b if s is a else a).sendall(data)
    except OSError:
        pass
    finally:
        a.close()
        b.close()


EXPECTED_AUTHORIZATION = None  # "Basic ..." when --credentials is given


def authorized(head):
    if EXPECTED_AUTHORIZATION is None:
        return True
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"proxy-authorization":
            return value.strip().decode("latin-1") == EXPECTED_AUTHORIZATION
    return False


def handle(client):
    try:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = client.recv(4096)
            if not chunk:
                client.close()
                return
            head += chunk
        line = head.split(b"\r\n", 1)[0].decode("latin-1")
        method, target, _ = line.split(" ", 2)
        if method != "CONNECT":
            client.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            client.close()
            return
        if not authorized(head):
            print(f"REFUSED {target}", file=sys.stderr, flush=True)
            client.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                           b"Proxy-Authenticate: Basic realm=\"test\"\r\nContent-Length: 0\r\n\r\n")
            client.close()
            return
        host, port = target.rsplit(":", 1)
        upstream = socket.create_connection((host, int(port)), timeout=10)
        upstream.settimeout(None)
        print(f"CONNECT {target}", file=sys.stderr, flush=True)
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        relay(client, upstream)
    except (OSError, ValueError):
        client.close()


def main():
    global EXPECTED_AUTHORIZATION
    if len(sys.argv) == 3 and sys.argv[1] == "--credentials":
        with open(sys.argv[2], "rb") as f:
            credentials = f.read().rstrip(b"\r\n")
        EXPECTED_AUTHORIZATION = "Basic " + base64.b64encode(credentials).decode("ascii")
    elif len(sys.argv) != 1:
        sys.exit("usage: connect_proxy.py [--credentials FILE]")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    print(f"LISTENING 127.0.0.1:{server.getsockname()[1]}", flush=True)
    while True:
        client, _ = server.accept()
        threading.Thread(target=handle, args=(client,), daemon=True).start()


if __name__ == "__main__":
    main()
