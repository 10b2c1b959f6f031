"""``_system/dashboard/files:*``: the stored files (``_storage``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from syncline.dashboard.errors import dashboard_error, user_errors
from syncline.database.query import Query
from syncline.files.service import STORAGE_TABLE, FileStorage
from syncline.functions.context import transaction_of
from syncline.functions.registration import RegisteredFunction, internal_mutation, internal_query
from syncline.values.validators import pagination_opts_validator, v

if TYPE_CHECKING:
    from syncline.application import Application

__all__ = ["functions"]


def functions(app: Application) -> dict[str, RegisteredFunction]:
    """The files page's system functions for ``app``, by path below ``_system/dashboard/``."""

    def storage() -> FileStorage:
        if app.storage is None:
            raise dashboard_error("FilesDisabled", "This deployment has no file storage")
        return app.storage

    @internal_query(args={"paginationOpts": pagination_opts_validator})
    @user_errors
    def list_files(ctx: Any, paginationOpts: dict[str, Any]) -> dict[str, Any]:
        files = storage()
        result = Query(transaction_of(ctx), STORAGE_TABLE).order("desc").paginate(paginationOpts)
        result["page"] = [
            {
                "_id": row["_id"],
                "_creationTime": row["_creationTime"],
                "size": row["size"],
                "contentType": row.get("contentType"),
                "sha256": row["sha256"],
                "url": files.url_for(row["_id"]),
            }
            for row in result["page"]
        ]
        return result

    @internal_mutation
    @user_errors
    def generate_upload_url(ctx: Any) -> str:
        return storage().generate_upload_url()

    @internal_mutation(args={"id": v.string()})
    @user_errors
    def remove(ctx: Any, id: str) -> None:
        storage().delete_in(transaction_of(ctx), id, "files:remove")

    return {
        "files:list": list_files,
        "files:generateUploadUrl": generate_upload_url,
        "files:remove": remove,
    }
