//! The **klips** function (API.md §6): Klips (KPI widgets) over a data source, their schema,
//! share rights, annotations, and their computed values (stored when data or schema change,
//! so reading a dashboard does not recompute).

mod klips;

use axum::routing::{get, post};
use axum::Router;
use shared::assets::records::Klip;
use shared::assets::{put_share_rights_handler, share_rights_handler};
use shared::auth::{read, write, FunctionRoutes, Rule};
use shared::AppState;

/// Every protected route of this function and the permission it needs.
pub const RULES: &[Rule] = &[
    read("/klips"),
    write("POST", "/klips", Some("klip.build")),
    read("/klips/{id}"),
    write("PUT", "/klips/{id}", Some("klip.edit")),
    write("DELETE", "/klips/{id}", Some("klip.delete")),
    read("/klips/{id}/schema"),
    write("PUT", "/klips/{id}/schema", Some("klip.edit")),
    read("/klips/{id}/share-rights"),
    write("PUT", "/klips/{id}/share-rights", Some("klip.share")),
    read("/klips/{id}/annotations"),
    write("POST", "/klips/{id}/annotations", Some("klip.edit")),
    read("/klips/{id}/annotations/{annotation_id}"),
    write(
        "PUT",
        "/klips/{id}/annotations/{annotation_id}",
        Some("klip.edit"),
    ),
    write(
        "DELETE",
        "/klips/{id}/annotations/{annotation_id}",
        Some("klip.edit"),
    ),
    // Recomputing a value anyone may see is not an edit.
    write("POST", "/klips/{id}/refresh", None),
];

pub fn router(state: AppState) -> Router {
    FunctionRoutes::new(state, RULES)
        .protected("/klips", get(klips::list).post(klips::create))
        .protected(
            "/klips/{id}",
            get(klips::show).put(klips::update).delete(klips::delete),
        )
        .protected(
            "/klips/{id}/schema",
            get(klips::schema).put(klips::put_schema),
        )
        .protected(
            "/klips/{id}/share-rights",
            get(share_rights_handler::<Klip>).put(put_share_rights_handler::<Klip>),
        )
        .protected(
            "/klips/{id}/annotations",
            get(klips::annotations).post(klips::add_annotation),
        )
        .protected(
            "/klips/{id}/annotations/{annotation_id}",
            get(klips::annotation)
                .put(klips::update_annotation)
                .delete(klips::delete_annotation),
        )
        .protected("/klips/{id}/refresh", post(klips::refresh))
        .build()
}
