"""kombu's filesystem transport, with messages that appear whole or not at all.

kombu creates a message file and then writes it, while a consumer may take the file in
between (it moves files without looking at the writer's lock) and read it empty; the
worker then stops on a JSONDecodeError. This Channel writes each message under a name no
consumer matches and renames it into place, an atomic step on one filesystem. Tasker's Celery
app selects it for a `filesystem://` broker through Celery's `broker_transport` setting (kombu
5.7.0); kombu's own transport is left as it is for the rest of the process.
"""

from __future__ import annotations

import os
import uuid
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.json import dumps


class Channel(filesystem.Channel):
    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = final + ".part"  # consumers only take names ending in ".<queue>.msg"
        try:
            with open(partial, "wb") as handle:
                handle.write(dumps(payload).encode())
            os.replace(partial, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel
    # A folder has no host: without this kombu warns "No hostname was supplied" at every publish.
    default_connection_params: dict[str, Any] = {}  # noqa: RUF012 - kombu's class attribute
