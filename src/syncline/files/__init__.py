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
  the database's mutation-idempotency records (kept at least as long as a
  token lives), so a token can never make two files, even across restarts;
  a second concurrent use in this process is refused at once.
* **Streaming:** uploads, downloads and ``store`` go chunk by chunk and never
  hold a whole file in memory. (``ctx.storage.get`` returns ``bytes`` by
  contract; ``ctx.storage.open`` streams.)
* **Limits:** an upload (HTTP or ``store``) larger than ``max_upload_bytes``
  (default :data:`DEFAULT_MAX_UPLOAD_BYTES`, 1 GiB) fails with
  :class:`FileTooLarge` (HTTP 413) and stores nothing.

``ctx.storage`` by function kind (action methods are coroutines)::

    method                                   query  mutation  action
    get_url(id) -> str | None                 yes    yes       yes
    generate_upload_url() -> str              -      yes       yes
    delete(id)                                -      yes (1)   yes (2)
    store(data, content_type=, sha256=) -> id -      -         yes
    get(id) -> bytes | None                   -      -         yes
    open(id) -> FileReader | None             -      -         yes

(1) part of the mutation's transaction; (2) its own transaction. Calling a
method where it is not available raises :class:`StorageNotAvailable`, which
says where to call it instead.
"""
