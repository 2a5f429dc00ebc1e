"""A gRPC client for ringgate's tests: calls test.Svc through TARGET and prints one JSON line of
what each call gave (values and status codes), for the Rust test to check.

usage: client.py TARGET [--tls CA_PEM SERVER_NAME | --slow N]
"""
import json
import queue
import sys

import grpc

target = sys.argv[1]
if len(sys.argv) > 2 and sys.argv[2] == "--slow":  # client.py TARGET --slow N: N concurrent Slow calls
    ch = grpc.insecure_channel(target)
    futs = [ch.unary_unary("/test.Svc/Slow").future(str(i).encode(), timeout=10) for i in range(int(sys.argv[3]))]
    print(json.dumps({"slow": sorted(f.result().decode() for f in futs)}), flush=True)
    sys.exit(0)
if len(sys.argv) > 2 and sys.argv[2] == "--tls":
    creds = grpc.ssl_channel_credentials(root_certificates=open(sys.argv[3], "rb").read())
    ch = grpc.secure_channel(target, creds, options=(("grpc.ssl_target_name_override", sys.argv[4]),))
else:
    ch = grpc.insecure_channel(target)
out = {}


def call(name, fn):
    try:
        out[name] = fn()
    except grpc.RpcError as e:
        out[name] = {"code": e.code().name, "message": e.details()}


def echo():
    resp, c = ch.unary_unary("/test.Svc/Echo").with_call(b"hello", timeout=5)
    return {"value": resp.decode(), "trailer": dict(c.trailing_metadata()).get("x-echo-trailer")}


call("echo", echo)
call("big", lambda: len(ch.unary_unary("/test.Svc/Echo")(b"x" * 3_000_000, timeout=10)))
call("count", lambda: [m.decode() for m in ch.unary_stream("/test.Svc/Count")(b"50", timeout=5)])
call("total", lambda: ch.stream_unary("/test.Svc/Total")(iter([b"ab", b"cde", b"f" * 100_000]), timeout=5).decode())
call("chat", lambda: [m.decode() for m in ch.stream_stream("/test.Svc/Chat")(iter([b"a", b"b", b"c"]), timeout=5)])


def pingpong():
    # Each message is sent only after the previous answer came back: a gateway that held the
    # request until its end would deadlock here (until the timeout).
    q = queue.Queue()

    def gen():
        for _ in range(5):
            m = q.get()
            if m is None:
                return
            yield m

    q.put(b"0")
    got = []
    for r in ch.stream_stream("/test.Svc/Chat")(gen(), timeout=5):
        got.append(r.decode())
        q.put(str(len(got)).encode() if len(got) < 5 else None)
    return got


call("pingpong", pingpong)
call("fail", lambda: ch.unary_unary("/test.Svc/Fail")(b"", timeout=5))
call("unknown", lambda: ch.unary_unary("/test.Other/Nope")(b"", timeout=5))
print(json.dumps(out), flush=True)
