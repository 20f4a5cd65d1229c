"""Tasker with the submit's write taken out, for bench/submit.py --ceiling: every request is
read, validated, batched and answered as Tasker answers it, but each batch is settled at once,
with no INSERT and no publish. Never a server to run: it loses every task. Its rate is the most
any way of persisting a submit could reach with the rest of the request as it is."""

from app.core.batching import Item
from run import app


def _settle(items: list[Item]) -> None:
    for item in items:
        item.settle()


app.extensions["tasker"].tasks.batcher.write = _settle
