"""``--embedded-s3``: an S3 server inside the process on 127.0.0.1, for trying s3proc out.

It is moto's server (the ``embedded`` extra). It keeps every object in memory and forgets them
when s3proc exits: a demo and a test bed, not storage.
"""

from __future__ import annotations

import logging
import os
from typing import Any

ACCESS_KEY = "s3proc"
SECRET_KEY = "s3proc-embedded"
REGION = "us-east-1"


class EmbeddedS3:
    """A started moto server; ``endpoint_url`` says where."""

    def __init__(self) -> None:
        try:
            from moto.server import ThreadedMotoServer
        except ImportError:
            raise RuntimeError("--embedded-s3 needs moto's server: pip install 's3proc[embedded]'") from None
        # moto's server accepts any credentials; these only keep botocore from looking for real ones.
        os.environ.setdefault("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._server: Any = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint_url = f"http://{host}:{port}"

    def create_bucket(self, client: Any, bucket: str) -> None:
        client.create_bucket(Bucket=bucket)

    def stop(self) -> None:
        self._server.stop()
