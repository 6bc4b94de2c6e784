#!/usr/bin/env python3
"""A slow but cheap HTTP target for bench/slow_api (python3 stdlib, asyncio).

Answers every request, on keep-alive HTTP/1.1 connections, after --delay-ms
with 201 and a fixed Message JSON, without looking at it (the test double
validates every form in a thread per connection, which costs more CPU than
this 2-core machine has at 500 requests/s).  GET /_stats answers
{"requests": n, "max_in_flight": n} at once.

    slow_target.py --delay-ms 200 --port-file FILE
"""

import argparse
import asyncio
import json
import os

BODY = b'{"sid":"SM0123456789abcdef0123456789abcdef","status":"queued"}'
CREATED = (b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
           b"Content-Length: %d\r\n\r\n" % len(BODY)) + BODY
stats = {"requests": 0, "in_flight": 0, "max_in_flight": 0}


async def serve(reader, writer, delay):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if length:
                await reader.readexactly(length)
            if head.startswith(b"GET /_stats "):
                data = json.dumps(stats).encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n" % len(data) + data)
                continue
            stats["requests"] += 1
            stats["in_flight"] += 1
            stats["max_in_flight"] = max(stats["max_in_flight"], stats["in_flight"])
            await asyncio.sleep(delay)
            stats["in_flight"] -= 1
            writer.write(CREATED)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay-ms", type=float, default=200)
    parser.add_argument("--port-file", required=True)
    args = parser.parse_args()
    server = await asyncio.start_server(
        lambda r, w: serve(r, w, args.delay_ms / 1000), "127.0.0.1", args.port, backlog=1024)
    tmp = f"{args.port_file}.tmp"
    with open(tmp, "w") as f:
        f.write(f"{server.sockets[0].getsockname()[1]}\n")
    os.replace(tmp, args.port_file)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
