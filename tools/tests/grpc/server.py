"""A gRPC server for ringgate's tests (grpcio, no generated code: messages are raw bytes).

Service test.Svc: Echo (unary), Slow (unary, answers after 2 s), Count (server streaming: n
messages for a request "n"), Total (client streaming: the total length), Chat (bidirectional
echo), Fail (ends with NOT_FOUND "nope" and a trailer), Who (answers the server's port),
SetHealth (request "1" SERVING or "2" NOT_SERVING: what grpc.health.v1.Health/Check answers
from then on, for every service name). Prints its port, then serves until killed.
usage: server.py [CERT_PEM KEY_PEM]  (with them: TLS)
"""
import sys
import time
from concurrent import futures

import grpc


def echo(req, ctx):
    ctx.set_trailing_metadata((("x-echo-trailer", "yes"),))
    return req


def slow(req, ctx):
    time.sleep(2)
    return req


def count(req, ctx):
    for i in range(int(req.decode())):
        yield str(i).encode()


def total(it, ctx):
    return str(sum(len(x) for x in it)).encode()


def chat(it, ctx):
    for x in it:
        yield x


def fail(req, ctx):
    ctx.set_trailing_metadata((("x-why", "test"),))
    ctx.abort(grpc.StatusCode.NOT_FOUND, "nope")


health = {"status": 1}


def who(req, ctx):
    return str(port).encode()


def set_health(req, ctx):
    health["status"] = int(req.decode())
    return req


def health_check(req, ctx):
    # HealthCheckResponse { status = 1 }: field 1, varint.
    return bytes([0x08, health["status"]])


handlers = {
    "Echo": grpc.unary_unary_rpc_method_handler(echo),
    "Slow": grpc.unary_unary_rpc_method_handler(slow),
    "Count": grpc.unary_stream_rpc_method_handler(count),
    "Total": grpc.stream_unary_rpc_method_handler(total),
    "Chat": grpc.stream_stream_rpc_method_handler(chat),
    "Fail": grpc.unary_unary_rpc_method_handler(fail),
    "Who": grpc.unary_unary_rpc_method_handler(who),
    "SetHealth": grpc.unary_unary_rpc_method_handler(set_health),
}
health_handlers = {"Check": grpc.unary_unary_rpc_method_handler(health_check)}
server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
server.add_generic_rpc_handlers((
    grpc.method_handlers_generic_handler("test.Svc", handlers),
    grpc.method_handlers_generic_handler("grpc.health.v1.Health", health_handlers),
))
if len(sys.argv) > 2:  # server.py CERT KEY: TLS (ALPN h2)
    creds = grpc.ssl_server_credentials(((open(sys.argv[2], "rb").read(), open(sys.argv[1], "rb").read()),))
    port = server.add_secure_port("127.0.0.1:0", creds)
else:
    port = server.add_insecure_port("127.0.0.1:0")
server.start()
print(port, flush=True)
server.wait_for_termination()
