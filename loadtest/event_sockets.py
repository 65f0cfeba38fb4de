"""Open N event WebSockets to a node, hold them, and print the node's RSS.

Usage: python3 event_sockets.py BASE_URL TOKEN PID [N] [HOLD_SECONDS]
Needs `pip install websockets`.
"""
import asyncio
import sys

import websockets


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        fields = dict(line.split(":", 1) for line in status)
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


async def hold(url, opened, release):
    async with websockets.connect(url, max_size=2**20, open_timeout=30) as socket:
        opened.append(socket)
        await release.wait()


async def main():
    base, token, pid = sys.argv[1], sys.argv[2], int(sys.argv[3])
    count = int(sys.argv[4]) if len(sys.argv) > 4 else 1000
    hold_seconds = float(sys.argv[5]) if len(sys.argv) > 5 else 5
    url = base.replace("http", "ws", 1) + f"/v1/events?token={token}"
    before = rss_kib(pid)
    opened, release = [], asyncio.Event()
    tasks = []
    for start in range(0, count, 100):
        tasks += [asyncio.create_task(hold(url, opened, release)) for _ in range(start, min(count, start + 100))]
        await asyncio.sleep(0.2)
    for _ in range(300):
        if len(opened) >= count or any(task.done() and task.exception() for task in tasks):
            break
        await asyncio.sleep(0.1)
    failed = [task for task in tasks if task.done() and task.exception()]
    if failed:
        print(f"first failure: {failed[0].exception()!r}")
    await asyncio.sleep(hold_seconds)
    during = rss_kib(pid)
    print(f"websockets open: {len(opened)} of {count} (failed {len(failed)})")
    print(f"node RSS before: {before[0] / 1024:.1f} MiB; with sockets open: {during[0] / 1024:.1f} MiB; peak (VmHWM): {during[1] / 1024:.1f} MiB")
    release.set()
    await asyncio.gather(*tasks, return_exceptions=True)


if __name__ == "__main__":
    asyncio.run(main())
