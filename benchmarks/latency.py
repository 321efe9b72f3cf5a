"""A loopback delay line: the round trips that a ``send_mail()`` to Exchange pays.

Every chunk is written ``delay`` after it was read, in each direction: a long
cable, not a sleep per chunk, so latency is added without capping throughput
and order is kept. The server is reached 1.5 round trips late, as over TCP.
"""

import asyncio
import contextlib
import threading


def start_delay_line(upstream: tuple[str, int], delay: float) -> tuple[str, int]:
    """Forward a free loopback port to ``upstream``, on a daemon thread."""
    loop = asyncio.new_event_loop()
    # A connection cut at exit is no news: the senders report real failures.
    loop.set_exception_handler(lambda loop, context: None)

    async def carry(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        line: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def read() -> None:
            data = b"-"
            while data:
                try:
                    data = await reader.read(65536)
                except OSError:
                    data = b""
                line.put_nowait((loop.time() + delay, data))

        reading = loop.create_task(read())
        while True:
            due, data = await line.get()
            await asyncio.sleep(due - loop.time())
            if not data or writer.is_closing():
                break
            writer.write(data)
        with contextlib.suppress(OSError):
            writer.write_eof()
        await reading

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(3 * delay)  # SYN, SYN-ACK, ACK: then the server accepts
        server_reader, server_writer = await asyncio.open_connection(*upstream)
        await asyncio.gather(carry(reader, server_writer), carry(server_reader, writer))
        writer.close()
        server_writer.close()

    listener = loop.run_until_complete(asyncio.start_server(serve, "127.0.0.1", 0))
    threading.Thread(target=loop.run_forever, daemon=True).start()
    host, port = listener.sockets[0].getsockname()[:2]
    return str(host), int(port)
