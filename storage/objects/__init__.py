"""The object store's implementations; the interface every feature sees is
:mod:`kernel.objects` (the :data:`kernel.objects.OBJECTS` port).

    model.py    keys, StoredObject, ObjectInfo, ObjectStoreError: what every store speaks
    scratch.py  the local scratch files objects are written to before they are committed
    local.py    LocalStore: a folder (temp file, fsync, atomic rename)
    s3.py       S3Store: S3-compatible storage through aiobotocore (imported only when
                configured: it loads aiohttp and botocore)
"""

from .local import LocalStore
from .model import DEFAULT_CONTENT_TYPE, ObjectInfo, ObjectStoreError, StoredObject, check_key

__all__ = [
    "DEFAULT_CONTENT_TYPE",
    "LocalStore",
    "ObjectInfo",
    "ObjectStoreError",
    "StoredObject",
    "check_key",
]
