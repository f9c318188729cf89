"""Concurrent attachment uploads against a running dev server (scripts/bench-uploads).

Creates an application, a customer and a chat; then `--clients` threads at once each
createUpload a file of `--mib` MiB and PUT its bytes to the signed URL (generated while
sending, so the client holds 64 KiB at a time); then sends messages attaching every upload,
ten per message. Meanwhile the server's RSS is sampled every 50 ms. Prints one JSON line.
Standard library only.
"""

import argparse
import http.client
import json
import statistics
import subprocess
import threading
import time
import urllib.parse
import urllib.request

CHUNK = b"\0" * 65536
MIB = 1024 * 1024


def graphql(url, token, query, variables):
    request = urllib.request.Request(
        url + "/graphql",
        data=json.dumps({"query": query, "variables": variables}).encode(),
        headers={"Content-Type": "application/json", "Authorization": token},
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        body = json.load(response)
    if body.get("errors"):
        raise RuntimeError(f"{query[:40]}: {body['errors']}")
    return body["data"]


def status(pid):
    """The server's RSS in KiB and its thread count."""
    rss, threads = 0, 0
    with open(f"/proc/{pid}/status") as lines:
        for line in lines:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
    return rss, threads


def put(target, size):
    """PUTs `size` bytes (a PNG header, then zeros) to the upload target; seconds taken."""
    parsed = urllib.parse.urlsplit(target["url"])
    started = time.perf_counter()
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=300)
    conn.putrequest("PUT", parsed.path + "?" + parsed.query)
    for header in target["headers"]:
        conn.putheader(header["name"], header["value"])
    conn.putheader("Content-Length", str(size))
    conn.endheaders()
    head = png_header(640, 480)
    conn.send(head)
    left = size - len(head)
    while left > 0:
        piece = CHUNK if left >= len(CHUNK) else CHUNK[:left]
        conn.send(piece)
        left -= len(piece)
    response = conn.getresponse()
    response.read()
    conn.close()
    if response.status != 200:
        raise RuntimeError(f"PUT answered {response.status}")
    return time.perf_counter() - started


def png_header(width, height):
    return (
        b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR"
        + width.to_bytes(4, "big")
        + height.to_bytes(4, "big")
        + bytes([8, 6, 0, 0, 0, 0, 0, 0, 0])
    )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--admin-key", required=True)
    parser.add_argument("--server-pid", type=int, required=True)
    parser.add_argument("--server-bin", required=True)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--mib", type=int, default=10)
    args = parser.parse_args()
    size = args.mib * MIB

    created = graphql(
        args.url,
        args.admin_key,
        "mutation { createApplication(name: \"Uploads\") { application { token } secret } }",
        {},
    )["createApplication"]
    app, secret = created["application"]["token"], created["secret"]
    token = subprocess.run(
        [args.server_bin, "mint-token", "--app", app, "--secret", secret, "--user", "c1",
         "--role", "CUSTOMER", "--ttl", "3600"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    chat = graphql(
        args.url, token, "mutation($a: ID!) { createChat(appToken: $a) { number } }", {"a": app}
    )["createChat"]["number"]
    targets = [
        graphql(
            args.url,
            token,
            "mutation($a: ID!, $c: Int!, $n: String!, $s: Int!) { createUpload(appToken: $a, "
            "chatNumber: $c, fileName: $n, contentType: \"image/png\", size: $s) "
            "{ id url headers { name value } } }",
            {"a": app, "c": chat, "n": f"photo-{i}.png", "s": size},
        )["createUpload"]
        for i in range(args.clients)
    ]

    samples = []
    sampling = threading.Event()

    def sample():
        while not sampling.is_set():
            samples.append(status(args.server_pid))
            time.sleep(0.05)

    before, threads_before = status(args.server_pid)
    sampler = threading.Thread(target=sample)
    sampler.start()
    latencies, errors = [], []
    gate = threading.Barrier(args.clients)

    def client(target):
        gate.wait()
        try:
            latencies.append(put(target, size))
        except Exception as error:  # noqa: BLE001 (reported in the result)
            errors.append(str(error))

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(t,)) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started

    attach_started = time.perf_counter()
    ids = [t["id"] for t in targets]
    attached = 0
    if not errors:
        for at in range(0, len(ids), 10):
            sent = graphql(
                args.url,
                token,
                "mutation($a: ID!, $c: Int!, $ids: [ID!]) { sendMessage(appToken: $a, "
                "chatNumber: $c, attachmentIds: $ids) { attachments { width } } }",
                {"a": app, "c": chat, "ids": ids[at:at + 10]},
            )
            attached += len(sent["sendMessage"]["attachments"])
    attach_elapsed = time.perf_counter() - attach_started
    sampling.set()
    sampler.join()
    peak = max((rss for rss, _ in samples), default=before)
    peak_threads = max((threads for _, threads in samples), default=threads_before)
    ordered = sorted(latencies)
    print(json.dumps({
        "clients": args.clients,
        "file_mib": args.mib,
        "total_mib": args.clients * args.mib,
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "seconds": round(elapsed, 2),
        "throughput_mib_s": round(args.clients * args.mib / elapsed, 1),
        "upload_p50_s": round(statistics.median(ordered), 2) if ordered else None,
        "upload_p99_s": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 2)
        if ordered else None,
        "attached": attached,
        "attach_seconds": round(attach_elapsed, 2),
        "rss_before_mib": round(before / 1024, 1),
        "rss_peak_mib": round(peak / 1024, 1),
        "rss_growth_mib": round((peak - before) / 1024, 1),
        "threads_before": threads_before,
        "threads_peak": peak_threads,
    }))


if __name__ == "__main__":
    main()
