// File storage with the official client: a mutation hands out an upload URL, `fetch`
// POSTs a file to it, a mutation saves the storageId, a (live) query returns
// ctx.storage.get_url, and the file downloads byte-identical. Then: the URL is
// single-use, Range works, and deleting the file turns the live URL into null.
import { createHash, randomBytes } from "node:crypto";

import { api, httpClient, run, unique, url, watch, within, wsClient } from "./lib.mjs";

const sha256 = (bytes) => createHash("sha256").update(bytes).digest("base64");

await run("storage", async (check) => {
  const client = wsClient();
  const bytes = randomBytes(300_000);

  // 1. A mutation returns an upload URL on this server.
  const uploadUrl = await within(
    5000,
    client.mutation(api.files.generate_upload_url, {}),
    "generate_upload_url",
  );
  check(
    "the upload URL points at this server",
    uploadUrl.startsWith(`${url}/api/storage/upload?token=`),
    uploadUrl,
  );

  // 2. The browser way: fetch() POSTs a Blob, whose type becomes the Content-Type.
  const blob = new Blob([bytes], { type: "image/png" });
  const uploaded = await within(
    10000,
    fetch(uploadUrl, { method: "POST", headers: { "Content-Type": blob.type }, body: blob }),
    "the upload",
  );
  check("the upload answers 200", uploaded.status === 200, uploaded.status);
  const { storageId } = await uploaded.json();
  check(
    "the upload answers a storageId",
    typeof storageId === "string" && storageId.length > 0,
    storageId,
  );

  // 3. A mutation saves the storageId (validated as v.id("_storage")).
  const name = `js-file-${unique}`;
  const docId = await within(
    5000,
    client.mutation(api.files.save_file, { storageId, name }),
    "save_file",
  );

  // 4. A live query returns the URL and the _storage metadata.
  const live = watch(client, api.files.get_file, { id: docId });
  const info = await live.waitFor((v) => v?.url, 5000, "the file's URL");
  check("get_url names this server", info.url === `${url}/api/storage/${storageId}`, info.url);
  check("_storage.sha256 is base64 of the contents", info.meta.sha256 === sha256(bytes), info.meta);
  check("_storage.size", info.meta.size === bytes.length, info.meta.size);
  check("_storage.contentType", info.meta.contentType === "image/png", info.meta.contentType);
  check("_storage._id is the storageId", info.meta._id === storageId, info.meta._id);

  // 5. The file downloads byte-identical, with the documented headers.
  const download = await within(10000, fetch(info.url), "the download");
  const got = Buffer.from(await download.arrayBuffer());
  check("the download answers 200", download.status === 200, download.status);
  check("the download is byte-identical", got.equals(bytes), {
    got: got.length,
    sent: bytes.length,
  });
  check(
    "Content-Type",
    download.headers.get("content-type") === "image/png",
    download.headers.get("content-type"),
  );
  check("Content-Length", download.headers.get("content-length") === String(bytes.length));
  check(
    "Digest",
    download.headers.get("digest") === `sha-256=${sha256(bytes)}`,
    download.headers.get("digest"),
  );
  check("Accept-Ranges", download.headers.get("accept-ranges") === "bytes");
  check(
    "Cache-Control",
    download.headers.get("cache-control") === "private, max-age=2592000",
    download.headers.get("cache-control"),
  );

  const ranged = await fetch(info.url, { headers: { Range: "bytes=100-199" } });
  const part = Buffer.from(await ranged.arrayBuffer());
  check(
    "Range answers 206 with that slice",
    ranged.status === 206 && part.equals(bytes.subarray(100, 200)),
    ranged.status,
  );

  // An upload URL works once.
  const again = await fetch(uploadUrl, { method: "POST", body: new Blob([Buffer.from("again")]) });
  const againBody = await again.json();
  check(
    "a used upload URL is refused",
    again.status === 403 && againBody.code === "UploadTokenUsed",
    againBody,
  );

  // The same flow with ConvexHttpClient, and a text upload without an explicit type.
  const http = httpClient();
  const url2 = await within(
    5000,
    http.mutation(api.files.generate_upload_url, {}),
    "HTTP generate_upload_url",
  );
  const text = `hello from ${unique}`;
  const second = await (await fetch(url2, { method: "POST", body: text })).json();
  const docId2 = await http.mutation(api.files.save_file, {
    storageId: second.storageId,
    name: `${name}-2`,
  });
  const info2 = await http.query(api.files.get_file, { id: docId2 });
  const text2 = await (await fetch(info2.url)).text();
  check("ConvexHttpClient flow round-trips", text2 === text, text2);
  check(
    "fetch's text Content-Type is kept",
    info2.meta.contentType?.startsWith("text/plain"),
    info2.meta.contentType,
  );

  // Deleting the file: the live query's URL becomes null and the URL answers 404.
  await within(5000, client.mutation(api.files.delete_file, { id: docId }), "delete_file");
  const after = await live.waitFor((v) => v && v.url === null, 5000, "the URL turning null");
  check(
    "after delete, get_url is null and the _storage row is gone",
    after.url === null && after.meta === null,
    after,
  );
  const gone = await fetch(info.url);
  const goneBody = await gone.json();
  check(
    "the deleted file's URL answers 404",
    gone.status === 404 && goneBody.code === "FileNotFound",
    goneBody,
  );

  return { storageId, size: bytes.length };
});
