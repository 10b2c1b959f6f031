"""File storage: ``ctx.storage``, upload URLs, and the ``_storage`` system table.

Modules: :mod:`~syncline.files.errors` (the errors, with HTTP statuses),
:mod:`~syncline.files.upload_tokens` (signed upload URL tokens and their secret),
:mod:`~syncline.files.service` (:class:`~syncline.files.service.FileStorage`: blobs
and rows, garbage collection), :mod:`~syncline.files.ctx_storage` (the ``ctx.storage``
objects functions see). Where the blobs live (``--files``) is chosen by
:func:`syncline.blobs.open_blob_store`.

A stored file is two things with one id (an id of the ``_storage`` system
table, which user code reads with ``ctx.db.system``):

* a blob in the :class:`~syncline.blobs.base.BlobStore`, whose key is that id;
* a ``_storage`` row: ``sha256`` (base64 of the SHA-256 digest), ``size``
  (float64 bytes), ``contentType`` (absent when unknown), ``_creationTime``.

Contracts:

* **A row always has its blob.** The blob is complete and durable before the
  transaction inserting its row commits. A blob is deleted only *after* a
  commit removed its row (a commit listener re-checks every ``_storage`` id a
  commit wrote), or by the orphan sweep (blobs without a row, older than a
  grace period: an upload cut short between blob and row, a deletion cut short
  by a crash). So a mutation that deletes a file and then fails keeps it.
* **Upload URLs** are ``<origin>/api/storage/upload?token=<token>``, valid for
  ``url_validity_ms`` (1 hour) and usable once. The token is a nonce and an
  expiry signed with HMAC-SHA256 under a secret kept in the data directory.
  Using a token is recorded in the same transaction that inserts the row, in
  the database's used-upload-token records (a key space of their own, apart
  from client mutation records, kept at least as long as a token lives), so a
  token can never make two files, even across restarts;
  a second concurrent use in this process is refused at once.
* **Streaming:** uploads, downloads and ``store`` go chunk by chunk and never
  hold a whole file in memory. (``ctx.storage.get`` returns ``bytes`` by
  contract; ``ctx.storage.open`` streams.)
* **Limits:** an upload (HTTP or ``store``) larger than ``max_upload_bytes``
  (default :data:`DEFAULT_MAX_UPLOAD_BYTES`, 1 GiB) fails with
  :class:`FileTooLarge` (HTTP 413) and stores nothing.

What ``ctx.storage`` offers each kind of function is in
:mod:`~syncline.files.ctx_storage`.
"""
