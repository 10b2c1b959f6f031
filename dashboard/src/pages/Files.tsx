// Files: the stored files with size, type, sha256 and date; upload, download, image
// preview, delete.
import { useRef, useState } from "react";
import { useMutation, usePaginatedQuery } from "convex/react";
import { errorText, formatBytes, formatTime, sys } from "../api";

type StoredFile = {
  _id: string;
  _creationTime: number;
  size: number;
  contentType: string | null;
  sha256: string;
  url: string | null;
};

export function FilesPage() {
  const { results, status, loadMore } = usePaginatedQuery(sys.query("files:list"), {}, {
    initialNumItems: 50,
  });
  const generate = useMutation(sys.mutation("files:generateUploadUrl"));
  const remove = useMutation(sys.mutation("files:remove"));
  const input = useRef<HTMLInputElement>(null);
  const [message, setMessage] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [preview, setPreview] = useState<string | null>(null);
  const files = results as StoredFile[];

  async function upload(list: FileList | null) {
    if (!list?.length) return;
    setError(null);
    try {
      for (const file of Array.from(list)) {
        setMessage(`Uploading ${file.name}…`);
        const url = (await generate({})) as string;
        const response = await fetch(url, {
          method: "POST",
          headers: { "Content-Type": file.type || "application/octet-stream" },
          body: file,
        });
        if (!response.ok) throw new Error(`Upload of ${file.name} failed: ${response.status}`);
      }
      setMessage(null);
    } catch (e) {
      setMessage(null);
      setError(errorText(e));
    } finally {
      if (input.current) input.current.value = "";
    }
  }

  return (
    <div className="stack">
      <div className="toolbar">
        <h2>Files</h2>
        <span className="spacer" />
        <label className="button-like">
          Upload files
          <input
            ref={input}
            type="file"
            multiple
            className="visually-hidden"
            onChange={(e) => upload(e.target.files)}
          />
        </label>
        {message && <span className="muted">{message}</span>}
      </div>
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
      <table className="data-table" aria-label="Stored files">
        <thead>
          <tr>
            <th>Preview</th>
            <th>Id</th>
            <th>Type</th>
            <th>Size</th>
            <th>SHA-256</th>
            <th>Uploaded</th>
            <th>
              <span className="visually-hidden">Actions</span>
            </th>
          </tr>
        </thead>
        <tbody>
          {files.map((f) => (
            <tr key={f._id} data-id={f._id}>
              <td>
                {f.url && f.contentType?.startsWith("image/") ? (
                  <button
                    type="button"
                    className="thumb-button"
                    aria-label={`Preview ${f._id}`}
                    onClick={() => setPreview(preview === f._id ? null : f._id)}
                  >
                    <img className="thumb" src={f.url} alt={`Image ${f._id}`} loading="lazy" />
                  </button>
                ) : (
                  <span className="muted">—</span>
                )}
              </td>
              <td className="mono small">{f._id}</td>
              <td>{f.contentType ?? "unknown"}</td>
              <td className="num">{formatBytes(f.size)}</td>
              <td className="mono small" title={f.sha256}>
                {f.sha256.slice(0, 16)}…
              </td>
              <td className="nowrap">{formatTime(f._creationTime)}</td>
              <td className="nowrap">
                {f.url && (
                  <a href={f.url} download={f._id} className="button-like">
                    Download
                  </a>
                )}{" "}
                <button
                  type="button"
                  aria-label={`Delete ${f._id}`}
                  onClick={() => remove({ id: f._id }).catch((e) => setError(errorText(e)))}
                >
                  Delete
                </button>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {status !== "LoadingFirstPage" && files.length === 0 && (
        <p className="muted pad">No files stored.</p>
      )}
      {status === "CanLoadMore" && (
        <button type="button" onClick={() => loadMore(50)}>
          Load more
        </button>
      )}
      {preview && files.find((f) => f._id === preview)?.url && (
        <figure className="preview">
          <img src={files.find((f) => f._id === preview)!.url!} alt={`Preview of ${preview}`} />
          <figcaption>{preview}</figcaption>
        </figure>
      )}
    </div>
  );
}
